"""Reanalysis on Ray workers: throughput with 0, 1 and 2 workers, and the learner's update rate with workers.

1. Reanalysis throughput, in roots x simulations per second of wall-clock: `--batches` batches per worker of the
   official budget (256 transitions, reanalyse_ratio 1, K = 5: up to 1536 roots, S = 100, K_s = 10) on 3m-sized data
   (bench/mazero_update_cost.py's replay), reanalysed in process (0 workers, one torch thread) and by 1 and 2
   Ray actors (`reanalyse_num_cpus` 1: one torch thread each) through the run loop's `ReanalysisPool`.
2. The learner's update rate at the official budget: `reanalyse_workers=2` (learner with one torch thread)
   against in-process reanalysis with `torch_threads=2`, `--updates` updates each after the pipeline has filled.

All figures come from one run, so their ratios compare like with like on a shared machine; the absolute rates
depend on the load. docs/mazero_scaleout.md has the results and the projection to a large machine.

    nice -n 5 python bench/mazero_reanalyse_workers.py            # about 5-10 min on 2 cores
    python bench/mazero_reanalyse_workers.py --batches 1 --updates 2 num_simulations=20   # smoke mode
"""
import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import torch  # noqa: E402

from learners.mazero_learner import reanalyse_policy_targets  # noqa: E402
from learners.mazero_reanalyse import ReanalysisPool  # noqa: E402
from mazero_search import MAPS  # noqa: E402
from mazero_update_cost import build_args, filled_replay, training_feed  # noqa: E402
from mcts.search import MCTSSearch  # noqa: E402
from modules.mazero.model import MAZeroModel  # noqa: E402
from run.mazero_config import build_mazero_config  # noqa: E402

MAP = "3m"


def setup(overrides, **keys):
    """The run's MAZeroConfig, a model and a filled replay at mazero.yaml's budget with `overrides` and `keys`."""
    n_agents, n_actions, obs_dim = MAPS[MAP]
    args = build_args("mazero", n_agents, n_actions, overrides + [f"{k}={v}" for k, v in keys.items()])
    config = build_mazero_config(args)
    input_dim = obs_dim + n_actions + n_agents  # obs_last_action, obs_agent_id
    torch.manual_seed(0)
    model = MAZeroModel(input_dim, config.model).eval()
    return config, model, filled_replay(config, input_dim, max(1000, 4 * args.batch_transitions))


def searched_roots(batch, config):
    n_reanalyse = int(round(config.reanalysis.reanalyse_ratio * batch.rows.shape[0]))
    return int(batch.before_end[:n_reanalyse, :config.replay.unroll_steps + 1].sum())


def throughput(workers, batches_per_worker, overrides):
    """Roots x simulations per second of wall-clock with `workers` Ray actors (0: in process)."""
    config, model, replay = setup(overrides, reanalyse_workers=workers)
    reanalysis = config.reanalysis
    pool = ReanalysisPool(reanalysis, model, MCTSSearch(reanalysis.search, seed=0), reanalyse_policy_targets)
    try:
        batches = [replay.sample_batch(1.0) for _ in range(batches_per_worker * max(1, workers))]
        roots = sum(searched_roots(batch, config) for batch in batches)
        start = time.perf_counter()
        for index, batch in enumerate(batches):
            pool.submit(batch, index)
        while len(pool):
            pool.next()
        wall = time.perf_counter() - start
    finally:
        pool.close()
    return roots * reanalysis.search.num_simulations / wall, len(batches), wall


def update_rate(updates, overrides, **keys):
    """(updates per second of the run loop's training step after the reanalysis pipeline has filled, the learner's
    seconds per update in reanalysis: computing it in process or waiting for the workers)."""
    config, model, replay = setup(overrides, **keys)
    feed = training_feed(config, model, replay)
    try:
        for _ in range(config.reanalysis.reanalyse_prefetch + 1):  # fills the pipeline
            feed.train_step(t_env=0)
        reanalysis_before = feed.time_spent()["reanalyse_search"]
        start = time.perf_counter()
        for _ in range(updates):
            feed.train_step(t_env=0)
        reanalysis = feed.time_spent()["reanalyse_search"] - reanalysis_before
        return updates / (time.perf_counter() - start), reanalysis / updates
    finally:
        feed.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2, help="batches per worker in the throughput part")
    parser.add_argument("--updates", type=int, default=4, help="timed updates in the update-rate part")
    parser.add_argument("overrides", nargs="*", help="key=value updates of mazero.yaml (both parts)")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| reanalysis | batches | wall s | roots x simulations / s | vs 1 worker |\n|---|---|---|---|---|")
    rates = {}
    for workers in (0, 1, 2):
        rates[workers], n, wall = throughput(workers, cli.batches, cli.overrides)
        label = f"{workers} Ray worker(s)" if workers else "in process"
        ratio = f"{rates[workers] / rates[1]:.2f}x" if workers else ""
        print(f"| {label} | {n} | {wall:.1f} | {rates[workers]:,.0f} | {ratio} |", flush=True)
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (target >= 1.8x); 1 worker / in process: "
          f"{rates[1] / rates[0]:.2f}x")

    torch.set_num_threads(2)
    in_process, in_process_reanalysis = update_rate(cli.updates, cli.overrides, reanalyse_workers=0)
    torch.set_num_threads(1)
    with_workers, waiting = update_rate(cli.updates, cli.overrides, reanalyse_workers=2)
    print(f"official-budget updates/s: in process with torch_threads=2 {in_process:.3f} ({1 / in_process:.2f} s "
          f"per update, {in_process_reanalysis:.2f} s of it reanalysis); reanalyse_workers=2 {with_workers:.3f} "
          f"({1 / with_workers:.2f} s per update, {waiting:.2f} s of it waiting for the workers): "
          f"{with_workers / in_process:.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
