"""MAZero on a device: learner-update time at a config's budget, GPU memory, and env steps/s of a short real run.

1. Times `--updates` learner updates (targets, reanalysis search, gradient step) with the model, the target model,
   the search's latent pool and the batch on `--device`, the replay in CPU memory (bench/mazero_update_cost.py's
   data and set-up), after one warm-up update; prints the mean wall-clock and, on CUDA, the peak GPU memory.
2. Runs `src/main.py --config=CONFIG --env-config=smax with env_args.map_name=MAP t_max=T` on the same device
   (`use_cuda`), stopped after `--minutes` if it has not finished, and prints its env steps/s and updates/s as the
   run logged them (`log_interval` shortened so that they are logged early).

    python bench/mazero_gpu.py --device cuda                  # official mazero.yaml budget, SMAX 3m: < 5 min on a GPU
    python bench/mazero_gpu.py --device cuda reanalyse_workers=4
    python bench/mazero_gpu.py --device cpu --minutes 2       # the same steps on the CPU

`--device cuda` on a machine without a CUDA device says so and exits with code 2.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import torch  # noqa: E402

from mazero_update_cost import build_args, filled_replay, training_feed  # noqa: E402
from mazero_search import MAPS  # noqa: E402
RUN_LOG_INTERVAL = 200  # env steps between the run's logged rates (mazero.yaml: 2000), at most t_max / 2


def time_updates(cli, device):
    from modules.mazero.model import MAZeroModel
    from run.mazero_config import build_mazero_config

    n_agents, n_actions, obs_dim = MAPS[cli.map]
    args = build_args(cli.config, n_agents, n_actions, cli.overrides, device)
    config = build_mazero_config(args)
    input_dim = obs_dim + (n_actions if args.obs_last_action else 0) + (n_agents if args.obs_agent_id else 0)
    replay = filled_replay(config, input_dim, max(1000, 4 * args.batch_transitions))
    feed = training_feed(config, MAZeroModel(input_dim, config.model).to(device).eval(), replay)
    try:
        feed.train_step(t_env=0)  # warm-up: allocator, kernels, search pools
        reanalysis_before = feed.time_spent()["reanalyse_search"]
        start = time.perf_counter()
        for _ in range(cli.updates):
            feed.train_step(t_env=0)  # ends with the priorities on the host: the device is synchronised
        seconds = (time.perf_counter() - start) / cli.updates
        reanalysis = feed.time_spent()["reanalyse_search"] - reanalysis_before
    finally:
        feed.close()
    print(f"update at {cli.config}'s budget on {cli.map}-sized data (batch {args.batch_transitions} transitions, S "
          f"{args.num_simulations}, K_s {args.sampled_actions}, reanalyse_ratio {args.reanalyse_ratio}, "
          f"reanalyse_workers {args.reanalyse_workers}): {seconds:.3f} s wall per update over {cli.updates}, "
          f"of which reanalysis {reanalysis / cli.updates:.3f} s")
    if device == "cuda":
        print(f"GPU memory: peak {torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2 ** 20:.0f} MiB reserved by torch")
    else:
        print("GPU memory: none used (device cpu)")


def last_logged(metrics, key):
    return metrics[key]["values"][-1] if key in metrics and metrics[key]["values"] else float("nan")


def short_run(cli, device):
    with tempfile.TemporaryDirectory() as results:
        cmd = [sys.executable, os.path.join(ROOT, "src", "main.py"), f"--config={cli.config}", "--env-config=smax",
               "with", f"env_args.map_name={cli.map}", f"t_max={cli.t_max}", f"use_cuda={device == 'cuda'}",
               f"log_interval={min(RUN_LOG_INTERVAL, max(1, cli.t_max // 2))}", "save_model=False",
               f"local_results_path={results}", *cli.overrides]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = proc.communicate(timeout=60 * cli.minutes)
            finished = proc.returncode == 0
            if not finished:
                raise SystemExit(f"the run failed (exit {proc.returncode}):\n{stderr[-3000:]}")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            finished = False
        wall = time.perf_counter() - start
        metrics = {}
        for directory, _, files in os.walk(results):
            if "metrics.json" in files:
                with open(os.path.join(directory, "metrics.json")) as f:
                    metrics = json.load(f)
    t_env = metrics["env_steps_per_second"]["steps"][-1] if "env_steps_per_second" in metrics else 0
    print(f"run {'completed' if finished else f'stopped after {cli.minutes} min'}: --config={cli.config} SMAX "
          f"{cli.map}, t_max {cli.t_max}, {wall:.0f} s wall; at t_env {t_env}: "
          f"{last_logged(metrics, 'env_steps_per_second'):.1f} env steps/s, "
          f"{last_logged(metrics, 'updates_per_second'):.2f} updates/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), required=True)
    parser.add_argument("--config", default="mazero", help="algorithm config name (src/config/algs/<name>.yaml)")
    parser.add_argument("--map", default="3m", choices=list(MAPS))
    parser.add_argument("--updates", type=int, default=5, help="timed updates after one warm-up update")
    parser.add_argument("--t-max", type=int, default=2000, help="env steps of the run")
    parser.add_argument("--minutes", type=float, default=3.0, help="the run is stopped after this long")
    parser.add_argument("overrides", nargs="*", help="key=value updates of the config (both parts)")
    cli = parser.parse_args()
    if cli.device == "cuda" and not torch.cuda.is_available():
        print("ERROR: --device cuda, but torch sees no CUDA device on this machine (torch "
              f"{torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu", file=sys.stderr)
        sys.exit(2)
    print(f"device {cli.device}: torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if cli.device == 'cuda' else f'{torch.get_num_threads()} threads'}")
    time_updates(cli, cli.device)
    short_run(cli, cli.device)


if __name__ == "__main__":
    main()
