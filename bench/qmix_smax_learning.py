"""Learning check and training throughput of the harness on SMAX (issue 3, acceptance 3).

learning:   QMIX / VDN on SMAX 3m, one seed each; reports the env steps at which the test win rate first reaches
            --target (default 0.8) and the wall-clock until then. A run stops once the target is reached.
throughput: env steps/s of training (collection + updates, tests excluded) for each --batch-size-run.

Each run is `python src/main.py ...` in a subprocess (results under --results); figures come from the Sacred
metrics.json timestamps. Example:
    nice -n 10 python bench/qmix_smax_learning.py learning --algs qmix vdn --t-max 2000000
    nice -n 10 python bench/qmix_smax_learning.py throughput --batch-size-run 1 8 --t-max 20000
"""
import argparse
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO_ROOT, "src", "main.py")


def latest_run_dir(results, name, map_name):
    runs = glob.glob(os.path.join(results, "sacred", name, map_name, "[0-9]*"))
    return max(runs, key=lambda p: int(os.path.basename(p))) if runs else None


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or caught mid-write
        return {}


def first_reaching(metrics, key, target):
    series = metrics.get(key, {"steps": [], "values": []})
    for step, value in zip(series["steps"], series["values"]):
        if value >= target:
            return step
    return None


def launch(alg, map_name, results, seed, extra):
    cmd = [sys.executable, MAIN, f"--config={alg}", "--env-config=smax", "with", f"env_args.map_name={map_name}",
           f"seed={seed}", f"local_results_path={results}", "save_git_info=False"] + extra
    log_path = os.path.join(results, f"{alg}_{map_name}_seed{seed}.log")
    log = open(log_path, "w")
    print(f"$ {' '.join(cmd)}  (log: {log_path})", flush=True)
    # a background shell starts jobs with SIGINT ignored; restore it so the run can be interrupted (Sacred then
    # records it as INTERRUPTED)
    restore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=restore_sigint), log


def learning(args):
    os.makedirs(args.results, exist_ok=True)
    extra = [f"t_max={args.t_max}", f"runner={'parallel' if args.batch_size_run > 1 else 'episode'}",
             f"batch_size_run={args.batch_size_run}", f"test_interval={args.test_interval}",
             f"test_nepisode={args.test_nepisode}", f"log_interval={args.test_interval}",
             f"runner_log_interval={args.test_interval}", f"learner_log_interval={args.test_interval}"]
    before = {alg: latest_run_dir(args.results, alg, args.map_name) for alg in args.algs}
    started = time.time()
    procs = {alg: launch(alg, args.map_name, args.results, args.seed, extra + args.extra) for alg in args.algs}
    reached = {}
    while procs:
        time.sleep(10)
        for alg in list(procs):
            proc, log = procs[alg]
            run_dir = latest_run_dir(args.results, alg, args.map_name)
            if run_dir is None or run_dir == before[alg]:
                continue
            metrics = read_metrics(run_dir)
            step = first_reaching(metrics, "test_battle_won_mean", args.target)
            if step is not None and alg not in reached:
                index = metrics["test_battle_won_mean"]["steps"].index(step)
                reached[alg] = (step, metrics["test_battle_won_mean"]["timestamps"][index])
                proc.send_signal(signal.SIGINT)  # Sacred records the run as INTERRUPTED
            if proc.poll() is not None:
                log.close()
                del procs[alg]
                summarise(alg, run_dir, args, reached.get(alg))
    print(f"total wall-clock {time.time() - started:.0f} s")


def summarise(alg, run_dir, args, reached):
    metrics = read_metrics(run_dir)
    with open(os.path.join(run_dir, "run.json")) as f:
        run = json.load(f)
    curve = list(zip(metrics.get("test_battle_won_mean", {}).get("steps", []),
                     metrics.get("test_battle_won_mean", {}).get("values", [])))
    start = run["start_time"]
    print(f"\n== {alg} on SMAX {args.map_name}, seed {args.seed}: {run_dir} ({run['status']})")
    if reached:
        step, timestamp = reached
        wall = _seconds_between(start, timestamp)
        print(f"first test_battle_won_mean >= {args.target}: t_env {step}, wall-clock {wall:.0f} s after start")
    else:
        print(f"test_battle_won_mean never reached {args.target} (last t_env {curve[-1][0] if curve else 0})")
    print("curve (t_env, test win rate): " + ", ".join(f"({s}, {v:.2f})" for s, v in curve))
    sys.stdout.flush()


def _seconds_between(iso_start, iso_end):
    from datetime import datetime

    def parse(text):
        return datetime.fromisoformat(text.replace("Z", ""))

    return (parse(iso_end) - parse(iso_start)).total_seconds()


def throughput(args):
    os.makedirs(args.results, exist_ok=True)
    for batch_size_run in args.batch_size_run:
        before = latest_run_dir(args.results, "qmix", args.map_name)
        extra = [f"t_max={args.t_max}", f"runner={'parallel' if batch_size_run > 1 else 'episode'}",
                 f"batch_size_run={batch_size_run}", f"test_interval={10 * args.t_max}",
                 f"test_nepisode={batch_size_run}", f"log_interval={10 * args.t_max}",
                 f"runner_log_interval={args.log_every}", f"learner_log_interval={10 * args.t_max}"]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc, log = launch("qmix", args.map_name, args.results, args.seed, extra + args.extra)
        proc.wait()
        log.close()
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
        run_dir = latest_run_dir(args.results, "qmix", args.map_name)
        if proc.returncode != 0 or run_dir == before:
            raise SystemExit(f"run failed (exit {proc.returncode}); see the log above")
        series = read_metrics(run_dir)["return_mean"]
        # from the first training log (after compile and the first test) to the last
        steps, stamps = series["steps"], series["timestamps"]
        rate = (steps[-1] - steps[0]) / _seconds_between(stamps[0], stamps[-1])
        print(f"QMIX SMAX {args.map_name} batch_size_run={batch_size_run}: {rate:.0f} env steps/s "
              f"wall-clock (t_env {steps[0]} -> {steps[-1]}, {run_dir}); whole process incl. start-up and "
              f"compile: {cpu_seconds:.0f} CPU s, {args.t_max / cpu_seconds:.0f} env steps per CPU s; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("learning", "throughput"):
        p = sub.add_parser(name)
        p.add_argument("--map-name", default="3m")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--results", default="/tmp/harness_bench")
        p.add_argument("--extra", nargs="*", default=[], help="more `with` updates, e.g. batch_size=64")
    learn = sub.choices["learning"]
    learn.add_argument("--algs", nargs="+", default=["qmix", "vdn"])
    learn.add_argument("--t-max", type=int, default=2000000)
    learn.add_argument("--target", type=float, default=0.8)
    learn.add_argument("--batch-size-run", type=int, default=1)
    learn.add_argument("--test-interval", type=int, default=10000)
    learn.add_argument("--test-nepisode", type=int, default=32)
    speed = sub.choices["throughput"]
    speed.add_argument("--batch-size-run", type=int, nargs="+", default=[1, 8])
    speed.add_argument("--t-max", type=int, default=20000)
    speed.add_argument("--log-every", type=int, default=1000, help="runner_log_interval (timing resolution)")
    args = parser.parse_args()
    learning(args) if args.command == "learning" else throughput(args)


if __name__ == "__main__":
    main()
