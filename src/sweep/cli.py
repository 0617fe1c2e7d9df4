"""Command line of the seed-sweep runner: python src/sweep GRID.yaml [--workers N] [--dir DIR] [--records DIR]."""
import argparse
import os
import re
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from sweep.grid import GridError, load_grid
from sweep.launch import REPO_ROOT, Launcher

RESULTS = ("completed", "skipped", "planned", "failed", "interrupted")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python src/sweep",
        description="Runs every (config, env config, map, variant, grid values, seed) of a grid file as a "
                    "src/main.py process, each in its own results folder; COMPLETED runs are skipped, "
                    "interrupted MAZero runs resume from their latest checkpoint (docs/sweep.md).")
    parser.add_argument("grid", help="grid YAML file (examples in sweeps/)")
    parser.add_argument("--workers", type=_positive_int, default=1, help="runs at the same time (default 1)")
    parser.add_argument("--dir", help="sweep folder holding one results folder per run "
                                      "(default results/sweeps/<grid file name>)")
    parser.add_argument("--records", help="also copy each completed run's Sacred record (no checkpoints, no "
                                          "cout) to RECORDS/<run name>/; runs already there are skipped")
    parser.add_argument("--beat-interval", type=float, metavar="SECONDS",
                        help="Sacred heartbeat of each run (default Sacred's 10 s): metrics reach disk this often; "
                             "a killed run resumes from its newest checkpoint saved before its last heartbeat")
    parser.add_argument("--only", type=re.compile, metavar="REGEX", help="run only runs whose name matches")
    parser.add_argument("--dry-run", action="store_true", help="print what each run needs and its command; run nothing")
    return parser


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def summary(outcomes):
    """One line per run (failures with the last lines of their stderr), then the counts."""
    lines = []
    for outcome in outcomes:
        took = f" ({_clock(outcome.seconds)})" if outcome.seconds is not None else ""
        lines.append(f"{outcome.result:<11} {outcome.name}{took}{': ' + outcome.detail if outcome.detail else ''}")
        lines += [f"    | {line}" for line in outcome.reasons]
    counts = {result: sum(o.result == result for o in outcomes) for result in RESULTS}
    lines.append(f"{len(outcomes)} runs: " + ", ".join(f"{n} {result}" for result, n in counts.items() if n))
    return lines


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_sweep(specs, launcher, workers):
    """Outcomes of every run, in grid order; Ctrl-C or SIGTERM interrupts the running runs and starts no more."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = [pool.submit(launcher.run, spec) for spec in specs]
    try:
        outcomes = [future.result() for future in futures]
    except KeyboardInterrupt:
        launcher.echo("[sweep] interrupted: stopping the running runs")
        launcher.stop()
        outcomes = [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True)
        signal.signal(signal.SIGTERM, previous)
    return outcomes


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        specs = load_grid(args.grid)
    except GridError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    if args.only:
        specs = [spec for spec in specs if args.only.search(spec.name)]
    stem = os.path.splitext(os.path.basename(args.grid))[0]
    sweep_dir = args.dir or os.path.join(REPO_ROOT, "results", "sweeps", stem)
    launcher = Launcher(sweep_dir, args.records, args.beat_interval)
    if args.dry_run:
        outcomes = [launcher.dry_run(spec) for spec in specs]
    else:
        os.makedirs(launcher.sweep_dir, exist_ok=True)
        outcomes = run_sweep(specs, launcher, args.workers)
    lines = [f"sweep {args.grid} in {launcher.sweep_dir}"] + summary(outcomes)
    print("\n".join(lines), flush=True)
    if not args.dry_run:
        with open(os.path.join(launcher.sweep_dir, "summary.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    if any(o.result == "interrupted" for o in outcomes):
        return 130
    return 1 if any(o.result == "failed" for o in outcomes) else 0
