"""MAPPO learning check on SMAX 3m (issue 5, acceptance 2) and MAPPO's training throughput.

learning:    one seed of `--config=mappo --env-config=smax` on 3m (batch_size_run 8, the config's default);
             reports the env steps (t_env) at which the test win rate first reaches --target (0.8), the
             wall-clock until then, and the curve t_env -> test_battle_won_mean. With --stop-at-target the run
             is interrupted once the target is reached (its Sacred record then says INTERRUPTED).
report:      the same figures from an existing Sacred run directory (e.g. while a learning run is going).
throughput:  env steps/s of MAPPO training (collection + updates; one 8-episode evaluation at the start) over a
             short run, measured between the first and the last training-stat log.

Figures come from the run's Sacred metrics.json (steps and timestamps). Examples:
    nice -n 10 python scripts/mappo_smax_3m_learning.py learning --t-max 4000000 --stop-at-target
    python scripts/mappo_smax_3m_learning.py report results/sacred/mappo/3m/1
    nice -n 10 python scripts/mappo_smax_3m_learning.py throughput --t-max 20000
Extra `with` updates go after --: ... learning -- use_rnn=False
"""
import argparse
import datetime
import glob
import json
import os
import signal
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO_ROOT, "src", "main.py")
WIN = "test_battle_won_mean"


def load_metrics(run_dir):
    try:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or read while Sacred rewrites it
        return {}


def seconds(timestamp):
    return datetime.datetime.fromisoformat(timestamp).timestamp()


def first_reaching(metrics, target):
    """(t_env, timestamp) of the first evaluation with a win rate >= target, or None."""
    series = metrics.get(WIN, {"steps": [], "values": [], "timestamps": []})
    for step, value, stamp in zip(series["steps"], series["values"], series["timestamps"]):
        if value >= target:
            return step, stamp
    return None


def training_rate(metrics):
    """Env steps/s between the first and the last training-stat log (return_mean), or None."""
    series = metrics.get("return_mean", {"steps": []})
    if len(series["steps"]) < 2:
        return None
    steps = series["steps"][-1] - series["steps"][0]
    return steps / (seconds(series["timestamps"][-1]) - seconds(series["timestamps"][0]))


def report(run_dir, target):
    metrics = load_metrics(run_dir)
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    start = seconds(run["start_time"])
    print(f"run {run_dir}: status {run['status']}")
    curve = metrics.get(WIN, {"steps": [], "values": [], "timestamps": []})
    print("t_env, test_battle_won_mean, wall-clock s since start")
    for step, value, stamp in zip(curve["steps"], curve["values"], curve["timestamps"]):
        print(f"{step}, {value:.3f}, {seconds(stamp) - start:.0f}")
    reached = first_reaching(metrics, target)
    if reached is None:
        last = curve["steps"][-1] if curve["steps"] else 0
        print(f"test win rate never reached {target} (last evaluation at t_env {last})")
    else:
        print(f"first reached {target} at t_env {reached[0]} after {seconds(reached[1]) - start:.0f} s wall-clock")
    rate = training_rate(metrics)
    if rate is not None:
        print(f"training throughput over the run (evaluations included): {rate:.1f} env steps/s")
    return reached


def launch(results, seed, with_updates):
    cmd = [sys.executable, MAIN, "--config=mappo", "--env-config=smax", "with", "env_args.map_name=3m",
           f"seed={seed}", f"local_results_path={results}", "save_git_info=False"] + with_updates
    os.makedirs(results, exist_ok=True)
    log_path = os.path.join(results, f"mappo_3m_seed{seed}.log")
    print(f"$ {' '.join(cmd)}\n  log: {log_path}", flush=True)
    log = open(log_path, "w")
    # a shell's background job starts with SIGINT ignored and the child would inherit that; restore the default
    # so that --stop-at-target (and Ctrl-C) can interrupt the run and Sacred records it as INTERRUPTED
    restore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=restore_sigint)
    return proc, log


def run_dirs(results):
    return set(glob.glob(os.path.join(results, "sacred", "mappo", "3m", "[0-9]*")))


def learning(args):
    before = run_dirs(args.results)
    updates = [f"t_max={args.t_max}", f"test_interval={args.test_interval}",
               f"test_nepisode={args.test_nepisode}", f"log_interval={args.test_interval}"] + args.with_updates
    proc, log = launch(args.results, args.seed, updates)
    run_dir = None
    try:
        while proc.poll() is None:
            time.sleep(args.poll)
            new = run_dirs(args.results) - before
            run_dir = run_dir or (max(new, key=lambda p: int(os.path.basename(p))) if new else None)
            if run_dir and args.stop_at_target and first_reaching(load_metrics(run_dir), args.target):
                proc.send_signal(signal.SIGINT)  # Sacred records the run as INTERRUPTED and exits
                proc.wait()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait()
        log.close()
    new = run_dirs(args.results) - before
    if not new:
        raise SystemExit(f"no Sacred record was written; see the log in {args.results}")
    report(run_dir or max(new, key=lambda p: int(os.path.basename(p))), args.target)


def throughput(args):
    before = run_dirs(args.results)
    updates = [f"t_max={args.t_max}", f"test_interval={args.t_max + 1}", "test_nepisode=8",
               f"log_interval={args.t_max + 1}", "runner_log_interval=2000"] + args.with_updates
    proc, log = launch(args.results, args.seed, updates)
    code = proc.wait()
    log.close()
    new = run_dirs(args.results) - before
    if code != 0 or not new:
        raise SystemExit(f"the run failed (exit code {code}); see the log in {args.results}")
    rate = training_rate(load_metrics(max(new, key=lambda p: int(os.path.basename(p)))))
    print(f"MAPPO training on SMAX 3m, batch_size_run 8: {rate:.1f} env steps/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("learning", "throughput"):
        p = sub.add_parser(name)
        p.add_argument("--results", default="/tmp/mappo_smax_3m", help="local_results_path of the run")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--t-max", type=int, default=4000000 if name == "learning" else 20000)
        p.add_argument("with_updates", nargs="*", help="extra Sacred `with` updates (after --)")
    learn = sub.choices["learning"]
    learn.add_argument("--target", type=float, default=0.8, help="test win rate to reach")
    learn.add_argument("--test-interval", type=int, default=20000, help="env steps between evaluations")
    learn.add_argument("--test-nepisode", type=int, default=32, help="episodes per evaluation (official MAPPO: 32)")
    learn.add_argument("--stop-at-target", action="store_true", help="interrupt the run once the target is met")
    learn.add_argument("--poll", type=float, default=30.0, help="seconds between looks at the record")
    rep = sub.add_parser("report")
    rep.add_argument("run_dir")
    rep.add_argument("--target", type=float, default=0.8)
    args = parser.parse_args()
    if args.command == "learning":
        learning(args)
    elif args.command == "throughput":
        throughput(args)
    else:
        report(args.run_dir, args.target)


if __name__ == "__main__":
    main()
