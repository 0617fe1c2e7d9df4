"""Env steps/s and updates/s of short MAZero runs with `selfplay_workers` 0 and 1 (and `reanalyse_workers` 0 and 1),
printed as ratios to the synchronous run, with the replay ratio each run kept (docs/mazero_scaleout.md).

Each run is `src/main.py --config=CONFIG --env-config=smax with env_args.map_name=MAP t_max=T` with the given
workers, stopped after `--minutes` if unfinished; the figures are the last ones the run logged (`log_interval`
shortened so they are logged often): env_steps_per_second and updates_per_second over the run's wall-clock since
its loop started (self-play actors already up), and the replay ratio the run logged with them (updates / t_env,
training starting once `batch_transitions` transitions are stored) against updates_per_env_step. Runs of a map go
one after the other, so their ratios compare like with like only on a machine whose load does not change between
them.

    python bench/mazero_pipeline.py                                   # 3m and 2s3z, sync and one actor, 4 min each
    python bench/mazero_pipeline.py reanalyse_ratio=0.25 --maps 3m --minutes 2 --reanalyse 0 1
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_INTERVAL = 100  # env steps between the run's logged rates


def last_logged(metrics, key):
    """(t_env, value) of the last logged value of `key`, or (0, nan)."""
    if key not in metrics or not metrics[key]["values"]:
        return 0, float("nan")
    return metrics[key]["steps"][-1], metrics[key]["values"][-1]


def run(cli, map_name, selfplay_workers, reanalyse_workers):
    with tempfile.TemporaryDirectory() as results:
        cmd = [sys.executable, os.path.join(ROOT, "src", "main.py"), f"--config={cli.config}", "--env-config=smax",
               "with", f"env_args.map_name={map_name}", f"t_max={cli.t_max}", "use_cuda=False",
               f"log_interval={LOG_INTERVAL}", f"learner_log_interval={LOG_INTERVAL}", "save_model=False",
               f"selfplay_workers={selfplay_workers}", f"reanalyse_workers={reanalyse_workers}",
               f"local_results_path={results}", *cli.overrides]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = proc.communicate(timeout=60 * cli.minutes)
            if proc.returncode != 0:
                raise SystemExit(f"the run failed (exit {proc.returncode}):\n{stderr[-3000:]}")
            finished = True
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # the run's finally blocks close its Ray actors and envs
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            finished = False
        wall = time.perf_counter() - start
        metrics, config = {}, {}
        for directory, _, files in os.walk(results):
            if "metrics.json" in files:
                with open(os.path.join(directory, "metrics.json")) as f:
                    metrics = json.load(f)
                with open(os.path.join(directory, "config.json")) as f:
                    config = json.load(f)
    t_env, env_rate = last_logged(metrics, "env_steps_per_second")
    _, update_rate = last_logged(metrics, "updates_per_second")
    _, replay_ratio = last_logged(metrics, "replay_ratio")
    return {"finished": finished, "wall": wall, "t_env": t_env, "env_rate": env_rate, "update_rate": update_rate,
            "replay_ratio": replay_ratio,
            "configured_ratio": config.get("updates_per_env_step", float("nan"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mazero_cpu", help="algorithm config name (src/config/algs/<name>.yaml)")
    parser.add_argument("--maps", nargs="+", default=["3m", "2s3z"])
    parser.add_argument("--selfplay", nargs="+", type=int, default=[0, 1], help="selfplay_workers values")
    parser.add_argument("--reanalyse", nargs="+", type=int, default=[0], help="reanalyse_workers values")
    parser.add_argument("--t-max", type=int, default=100000, help="env steps of each run")
    parser.add_argument("--minutes", type=float, default=4.0, help="each run is stopped after this long")
    parser.add_argument("overrides", nargs="*", help="key=value updates of the config (every run)")
    cli = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; --config={cli.config} "
          f"{' '.join(cli.overrides)}")
    print("| map | selfplay_workers | reanalyse_workers | run | t_env | env steps/s | updates/s | replay ratio "
          "(configured) | env steps/s vs sync |\n|---|---|---|---|---|---|---|---|---|")
    for map_name in cli.maps:
        baseline = None
        for reanalyse_workers in cli.reanalyse:
            for selfplay_workers in cli.selfplay:
                result = run(cli, map_name, selfplay_workers, reanalyse_workers)
                if baseline is None:
                    baseline = result["env_rate"]
                state = "completed" if result["finished"] else f"stopped at {cli.minutes:g} min"
                deviation = 100 * (result["replay_ratio"] / result["configured_ratio"] - 1)
                print(f"| {map_name} | {selfplay_workers} | {reanalyse_workers} | {state} | {result['t_env']} | "
                      f"{result['env_rate']:.2f} | {result['update_rate']:.3f} | {result['replay_ratio']:.4f} "
                      f"({result['configured_ratio']:g}, {deviation:+.1f} %) | "
                      f"{result['env_rate'] / baseline:.2f}x |", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
