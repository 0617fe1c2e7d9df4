"""How close MAZero's model, search and learner update come to the CPU's FLOP ceiling (issue 14's table).

For 3m- and 8m-sized models (official sizes, src/config/algs/mazero.yaml) and 1 and 2 torch threads, in one run:
  search step on 1536 roots  the official update's reanalysis batch (batch 256 x (K + 1) = 6 positions),
  search step on 8 roots     a self-play search step (batch_size_run 8),
  MAZeroLearner.train        one update at the mazero_cpu budget (targets, its reanalyse_ratio, K = 5 unroll,
                             backward, Adam), on the replay and learner of bench/mazero_update_cost.py,
where a search step is recurrent_inference with the value / reward scalars and the softmax, as the search runs it
(one TorchScript trace, mcts.search.SearchNetwork). Each row has its FLOPs (torch.utils.flop_counter.FlopCounterMode
on the eager call, with the transformer fast path switched off while counting, since its fused kernels are
invisible to the counter), its best time on the path the code really runs (for the search steps the trace, fast
path on, under no_grad; CPU time of the calling thread with one torch thread, wall-clock with two), and the share
of "peak" that makes: the best of torch.mm on [4608,128]x[128,128] and [1024,1024]x[1024,1024] timed the same way
in the same run with the same thread count. Best of repeats, because the machine is shared: the best repeat is the
one least disturbed.
For the search steps, the last column is the same call without the trace (SearchNetwork eager), in this run.
Last, the tree + glue share of one 3m search (B = 32, S = 100, K_s = 10) from bench/mazero_search.py's
instrumented driver, in CPU time of one thread.

    nice -n 10 python bench/mazero_flops.py                 # full table (a few minutes when loaded)
    python bench/mazero_flops.py --maps 3m --threads 1      # one map, one thread count
"""
import argparse
import os
import subprocess
import sys
import time
from unittest import mock

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mazero_search import MAPS, build_model, measure, official_args, root_inputs, timer_bias  # noqa: E402
from mazero_update_cost import build_args, filled_replay, training_feed  # noqa: E402
from mcts import ctree  # noqa: E402
from mcts.search import MCTSSearch, SearchConfig, SearchNetwork, trace_search_network  # noqa: E402
from modules.mazero.model import MAZeroModel  # noqa: E402
from run.mazero_config import build_mazero_config  # noqa: E402

PEAK_SHAPES = ((4608, 128, 128), (1024, 1024, 1024))  # (m, k, n) of the peak torch.mm
REANALYSIS_ROOTS = 256 * 6  # official batch 256 x (unroll K = 5 + 1) positions
SELF_PLAY_ROOTS = 8


def best_seconds(fn, min_time, min_reps=3):
    """Best seconds of `fn()` over at least `min_reps` calls and `min_time` seconds, after a warm-up.

    With one torch thread, CPU time of this thread: on the shared machine wall-clock would charge a long call for
    the time it spent preempted and a short one (the peak's torch.mm) not. With more threads, wall-clock (the worker
    threads' CPU time is not this thread's), best of the repeats.
    """
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def eager_network(search, model, inputs):
    """MCTSSearch.network_for without the trace: the counter cannot see inside (and breaks on) a TorchScript graph,
    so while counting the search runs the same SearchNetwork eagerly."""
    return SearchNetwork(model, search.value_support_size, search.reward_support_size)


def count_flops(fn):
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with mock.patch.object(MCTSSearch, "network_for", eager_network), FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return counter.get_total_flops()


def peak_flops(min_time):
    """Best FLOP/s of torch.mm over PEAK_SHAPES."""
    best = 0.0
    for m, k, n in PEAK_SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        best = max(best, 2 * m * k * n / best_seconds(lambda: torch.mm(a, b), min_time))
    return best


def inference_case(model, input_dim, roots, n_agents, n_actions):
    """One search step on `roots` random latents and actions as the search runs it: the traced SearchNetwork.step
    (recurrent_inference with the scalars and softmax folded in), under no_grad. Returns (timed call, eager call
    for the FLOP counter, which does not see inside a trace)."""
    generator = torch.Generator().manual_seed(roots)
    network = SearchNetwork(model, model.value_support_size, model.reward_support_size)
    with torch.no_grad():
        inputs = torch.randn(roots, n_agents, input_dim, generator=generator)
        latent = model.represent(inputs)
        actions = torch.randint(0, n_actions, (roots, n_agents), generator=generator)
        traced = trace_search_network(network, inputs, latent, actions)

    def call(step):
        def run():
            with torch.no_grad():
                step(latent, actions)
        return run
    return call(traced.step), call(network.step)


def update_case(map_name):
    """One training step (TrainingFeed.train_step: MAZeroLearner.update and the replay's side) at the mazero_cpu
    budget, on bench/mazero_update_cost.py's random replay."""
    n_agents, n_actions, obs_dim = MAPS[map_name]
    args = build_args("mazero_cpu", n_agents, n_actions, [])
    config = build_mazero_config(args)
    input_dim = obs_dim + (n_actions if args.obs_last_action else 0) + (n_agents if args.obs_agent_id else 0)
    torch.manual_seed(0)
    replay = filled_replay(config, input_dim, max(1000, 4 * args.batch_transitions))
    feed = training_feed(config, MAZeroModel(input_dim, config.model).eval(), replay)
    feed.train_step(t_env=0)  # warm-up: fills the reanalysis prefetch queue, so each counted call is one update
    return lambda: feed.train_step(t_env=0)


def cases(map_name):
    n_agents, n_actions, obs_dim = MAPS[map_name]
    args = official_args(n_agents, n_actions, 100, 10)
    model, input_dim = build_model(args, obs_dim, seed=0)
    update = update_case(map_name)
    return [(f"search step (traced recurrent_inference), {REANALYSIS_ROOTS} roots",
             *inference_case(model, input_dim, REANALYSIS_ROOTS, n_agents, n_actions)),
            (f"search step (traced recurrent_inference), {SELF_PLAY_ROOTS} roots",
             *inference_case(model, input_dim, SELF_PLAY_ROOTS, n_agents, n_actions)),
            ("MAZeroLearner.train, mazero_cpu budget", update, update)]


def search_split(min_time):
    """Tree + glue share of a 3m search at B = 32, S = 100, K_s = 10 (bench/mazero_search.py's instrumentation)."""
    n_agents, n_actions, obs_dim = MAPS["3m"]
    args = official_args(n_agents, n_actions, 100, 10)
    model, input_dim = build_model(args, obs_dim, seed=0)
    inputs, avail_actions = root_inputs(np.random.default_rng(32), 32, n_agents, n_actions, input_dim)
    med = measure(model, ctree.SampledTrees, SearchConfig.from_config(args), inputs, avail_actions, min_time, 3, 9,
                  timer_bias())
    return med


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", nargs="+", choices=["3m", "8m"], default=["3m", "8m"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="torch thread counts to time")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of repeats per timed case")
    cli = parser.parse_args()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"MAZero FLOP table: torch {torch.__version__}, commit {commit}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    torch.set_num_threads(1)
    peaks = {}
    for threads in cli.threads:
        torch.set_num_threads(threads)
        peaks[threads] = peak_flops(cli.min_time)
        print(f"peak ({threads} thread{'s' * (threads > 1)}): {peaks[threads] / 1e9:.1f} GFLOP/s")
    print()
    print("| map | what | FLOPs | " + " | ".join(f"{t} thr {'CPU' if t == 1 else 'wall'} ms | {t} thr share of peak"
                                              for t in cli.threads)
          + (f" | {cli.threads[-1]} thr / {cli.threads[0]} thr speed-up" if len(cli.threads) > 1 else "")
          + " | 1 thr eager / traced |")
    print("|" + "---|" * (4 + 2 * len(cli.threads) + (len(cli.threads) > 1)))
    for map_name in cli.maps:
        torch.set_num_threads(1)
        for label, fn, eager_fn in cases(map_name):
            flops = count_flops(eager_fn)
            seconds = {}
            for threads in cli.threads:
                torch.set_num_threads(threads)
                seconds[threads] = best_seconds(fn, cli.min_time)
            cells = " | ".join(f"{seconds[t] * 1e3:.2f} | {flops / seconds[t] / peaks[t]:.0%}" for t in cli.threads)
            ratio = f" | {seconds[cli.threads[0]] / seconds[cli.threads[-1]]:.2f}x" if len(cli.threads) > 1 else ""
            torch.set_num_threads(1)  # the trace's gain in this run: the same call without it
            traced = seconds[1] if 1 in seconds else best_seconds(fn, cli.min_time)
            eager = "-" if eager_fn is fn else f"{best_seconds(eager_fn, cli.min_time) / traced:.2f}x"
            print(f"| {map_name} | {label} | {flops / 1e9:.4g} G | {cells}{ratio} | {eager} |", flush=True)
    torch.set_num_threads(1)
    med = search_split(cli.min_time)
    share = med["share"]
    print(f"\n3m search, B = 32, S = 100, K_s = 10, 1 thread ({med['searches']} searches, median "
          f"{med['total'] * 1e3:.0f} ms CPU): network {share['network']:.1%}, tree {share['tree']:.1%}, "
          f"tree other {share['tree_other']:.1%}, glue {share['glue']:.1%}; tree + glue {share['tree+glue']:.1%}")


if __name__ == "__main__":
    main()
