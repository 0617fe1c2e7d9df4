"""MAZero on the one-step climbing and penalty matrix games (issue 7, acceptance 1).

Trains `--config=mazero_matrix --env-config=matrix` on each game (one seed each, the config's budgets unless
overridden after --) and reports, from the run's Sacred metrics.json, the test return after every evaluation and
the first env step at which every test episode played the optimal joint action (test_return_mean equal to the
optimum with test_return_std 0). Exits 1 if a game is not solved at the end of its run.

    nice -n 10 python scripts/mazero_matrix_games.py --seed 1
    python scripts/mazero_matrix_games.py --games penalty --seed 2 -- t_max=8000
    python scripts/mazero_matrix_games.py --seed 1 --records records/gumbel_matrix_games -- root_search=gumbel

`--records DIR` also writes each run's Sacred record, without this machine's paths, to DIR/<game>_seed<S>/ (for
committing and `python -m tools.results --root DIR`, as the sweep's --records does).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO_ROOT, "src", "main.py")
sys.path.insert(0, os.path.join(REPO_ROOT, "src"))

from sweep.records import export_single_record  # noqa: E402

OPTIMUM = {"climbing": 11.0, "penalty": 10.0}  # best payoff of src/envs/matrix_game.py's games


def all_optimal(mean, std, optimum):
    """An evaluation in which every test episode returned the optimum."""
    return abs(mean - optimum) < 1e-6 and std < 1e-6


def solved_at(metrics, optimum):
    """First t_env at which the test return equals the optimum in every test episode, or None."""
    means, stds = metrics["test_return_mean"], metrics["test_return_std"]
    for step, mean, std in zip(means["steps"], means["values"], stds["values"]):
        if all_optimal(mean, std, optimum):
            return step
    return None


def run_game(game, seed, results_dir, overrides):
    results = os.path.join(results_dir, f"{game}_seed{seed}")
    command = [sys.executable, MAIN, "--config=mazero_matrix", "--env-config=matrix", "with",
               f"env_args.game={game}", f"seed={seed}", f"local_results_path={results}", *overrides]
    start = time.time()
    with open(os.path.join(results_dir, f"{game}_seed{seed}.log"), "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    seconds = time.time() - start
    if code != 0:
        raise SystemExit(f"{game}: main.py exited with {code}; see {log.name}")
    # the newest Sacred run under this game's results folder
    run_dir = max(glob.glob(os.path.join(results, "sacred", "*", "*", "[0-9]*")), key=os.path.getmtime)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f), seconds, run_dir, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=list(OPTIMUM), choices=list(OPTIMUM))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results-dir", default=os.path.join(REPO_ROOT, "results", "matrix_games"))
    parser.add_argument("--records", help="also write each run's record to RECORDS/<game>_seed<S>/")
    parser.add_argument("overrides", nargs="*", help="extra `with` updates for main.py (after --)")
    args = parser.parse_args()
    os.makedirs(args.results_dir, exist_ok=True)

    unsolved = []
    for game in args.games:
        metrics, seconds, run_dir, results = run_game(game, args.seed, args.results_dir, args.overrides)
        if args.records:
            export_single_record(run_dir, args.records, os.path.basename(results), results)
        means, stds = metrics["test_return_mean"], metrics["test_return_std"]
        curve = ", ".join(f"{s}: {m:.2f}±{d:.2f}" for s, m, d in zip(means["steps"], means["values"],
                                                                     stds["values"]))
        first = solved_at(metrics, OPTIMUM[game])
        final_ok = all_optimal(means["values"][-1], stds["values"][-1], OPTIMUM[game])
        print(f"{game} (optimum {OPTIMUM[game]:g}), seed {args.seed}, {seconds:.0f} s, record {run_dir}")
        print(f"  test return (t_env: mean±std over the test episodes): {curve}")
        print(f"  every test episode optimal first at t_env {first}; at the end: {'yes' if final_ok else 'no'}")
        if not final_ok:
            unsolved.append(game)
    if unsolved:
        print(f"not solved at the end of the run: {', '.join(unsolved)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
