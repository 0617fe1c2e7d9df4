"""Runs grouped by configuration (tools.results.groups): a budget study under one algorithm name, seeds counted once,
the budget rule, evaluation runs. Real Sacred records written by a tiny Experiment through a FileStorageObserver."""
import os

import pytest

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
from sacred import Experiment  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from helpers.results_helpers import STEPS, log_metric, rows_of, run_cli, run_json  # noqa: E402


BASE = {"num_simulations": 8, "sampled_actions": 4, "reanalyse_ratio": 0.1, "use_os_lambda": True}
SEARCH = {"num_simulations": 50, "sampled_actions": 10}
# (config updates, seed, win rates at STEPS), in the order they run (= start time order)
RUNS = [
    ({}, 1, [0.0, 0.25, 0.5, 1.0]),
    ({}, 2, [0.0, 0.5, 0.5, 0.75]),
    ({"local_results_path": "elsewhere", "torch_threads": 2}, 2, [0.0, 0.5, 0.5, 0.75]),  # identical rerun
    ({}, 2, [0.0, 0.5, 0.75, 0.75]),  # a rerun of seed 2 that came out differently
    (dict(SEARCH, reanalyse_ratio=0), 2, [0.0, 0.0, 0.25, 0.5]),  # `with reanalyse_ratio=0`: an int
    (dict(SEARCH, reanalyse_ratio=0.0), 3, [0.0, 0.25, 0.25, 0.25]),
    ({"use_os_lambda": False}, 2, [0.0, 0.0, 0.0, 0.25]),
]
EVALUATION = ({"evaluate": True, "checkpoint_path": "results/models/x", "t_max": 100000}, 2, [0.5])
LABEL_A = "mazero_cpu[num_simulations=8, reanalyse_ratio=0.1, sampled_actions=4, use_os_lambda=True]"
LABEL_B = "mazero_cpu[num_simulations=50, reanalyse_ratio=0, sampled_actions=10, use_os_lambda=True]"
LABEL_C = "mazero_cpu[num_simulations=8, reanalyse_ratio=0.1, sampled_actions=4, use_os_lambda=False]"
WINS = []  # the curve the next run logs (outside the config: a config key would make every run a group)


def sacred_experiment():
    ex = Experiment("pymarl", save_git_info=False)
    ex.add_config(name="mazero_cpu", seed=0, env="smax", env_args={"map_name": "3m", "seed": 0}, t_max=300,
                  local_results_path="results", torch_threads=1, evaluate=False, checkpoint_path="", **BASE)

    @ex.main
    def main(_run, _config):
        steps = [300] if _config["evaluate"] else STEPS
        for t, win in zip(steps, WINS):
            log_metric(_run, "test_battle_won_mean", t, win)

    return ex


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("study") / "sacred")
    ex = sacred_experiment()
    ex.observers[:] = [FileStorageObserver(os.path.join(root, "mazero_cpu", "3m"))]
    for updates, seed, wins in RUNS + [EVALUATION]:
        WINS[:] = wins
        ex.run(config_updates=dict(updates, seed=seed, env_args={"seed": seed}), options={"--capture": "no"})
    return root


def _rows(capsys, *argv):
    return {r["alg"]: r for r in rows_of(run_json(capsys, *argv), "compare")}


def test_three_configurations_one_seed_repeated(study, capsys):
    doc = run_json(capsys, "compare", "--root", study, "--at", "150,300")
    rows = {r["alg"]: r for r in rows_of(doc, "compare")}
    assert sorted(rows) == sorted([LABEL_A, LABEL_B, LABEL_C])
    a, b, c = rows[LABEL_A], rows[LABEL_B], rows[LABEL_C]
    # A: seeds 1 and 2 (its two reruns are repeats, not seeds); two seeds: bootstrap CI = [min, max]
    assert (a["seeds"], a["repeats"], a["seed_ids"]) == (2, 2, [1, 2])
    assert (a["mean@300"], a["ci_low@300"], a["ci_high@300"]) == (0.875, 0.75, 1.0)
    assert (a["mean@150"], a["ci_low@150"], a["ci_high@150"]) == (0.375, 0.25, 0.5)
    # B: reanalyse_ratio 0 and 0.0 are one configuration
    assert (b["seeds"], b["repeats"], b["mean@300"], b["ci_low@300"], b["ci_high@300"]) == (2, 0, 0.375, 0.25, 0.5)
    # C: one seed, so no CI
    assert (c["seeds"], c["mean@300"], c["ci_low@300"], c["ci_high@300"]) == (1, 0.25, None, None)
    notes = doc[-1]["notes"]
    (repeat_note,) = [n for n in notes if "counted as one seed" in n]
    assert repeat_note.startswith(f"3m {LABEL_A} seed 2: 3 runs (mazero_cpu/3m/2, mazero_cpu/3m/3, mazero_cpu/3m/4) "
                                  f"counted as one seed (run mazero_cpu/3m/2, the earliest); ")
    assert repeat_note.endswith("curves of mazero_cpu/3m/4 DIFFER from it (the runs are not reproducible)")
    assert "1 evaluation run left out (evaluate=True: test episodes of a checkpoint, not a training seed): " \
           "mazero_cpu/3m/8" in notes
    code, out, _ = run_cli(capsys, "compare", "--root", study, "--at", "300")
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert code == 0 and len([line for line in lines if line.startswith("mazero_cpu[")]) == 3
    assert f"{LABEL_A} 2 (+2 repeats) 0.875 [0.750, 1.000]" in lines
    assert f"{LABEL_C} 1 0.250" in lines


def test_group_by_and_label(study, capsys):
    rows = _rows(capsys, "compare", "--root", study, "--at", "300", "--group-by", "num_simulations")
    assert sorted(rows) == ["mazero_cpu[num_simulations=50]", "mazero_cpu[num_simulations=8]"]
    # A and C pooled: seeds 1, 2 (A's first seed-2 run, the earliest); 3 repeats of seed 2
    pooled = rows["mazero_cpu[num_simulations=8]"]
    assert (pooled["seeds"], pooled["repeats"], pooled["mean@300"]) == (2, 3, 0.875)
    doc = run_json(capsys, "compare", "--root", study, "--group-by", "num_simulations")
    assert "mazero_cpu: runs differ in reanalyse_ratio, sampled_actions, use_os_lambda but are pooled by the " \
           "--group-by choice" in doc[-1]["notes"]
    rows = _rows(capsys, "compare", "--root", study, "--label", "use_os_lambda")
    assert {k: (r["seeds"], r["repeats"]) for k, r in rows.items()} == {
        "use_os_lambda=True": (3, 3), "use_os_lambda=False": (1, 0)}  # B's seed 2 repeats A's
    rows = _rows(capsys, "compare", "--root", study, "--label", "name")  # one group per algorithm name
    assert {k: (r["seeds"], r["repeats"]) for k, r in rows.items()} == {"mazero_cpu": (3, 4)}  # 7 runs
    code, _, err = run_cli(capsys, "compare", "--root", study, "--group-by", "num_simulation")
    assert code == 1 and "no selected run has config key(s) num_simulation" in err


def test_budget_rule_nearest(study, capsys):
    code, out, _ = run_cli(capsys, "compare", "--root", study, "--at", "160", "--group-by", "num_simulations")
    assert "@160 (last eval <=) mean [95% CI]" in out
    # at 160: the last evaluation at or before is at 100, the nearest one at 200
    rows = _rows(capsys, "compare", "--root", study, "--at", "160", "--label", "use_os_lambda")
    assert rows["use_os_lambda=True"]["mean@160"] == pytest.approx((0.25 + 0.5 + 0.25) / 3)
    rows = _rows(capsys, "compare", "--root", study, "--at", "160", "--label", "use_os_lambda", "--nearest")
    assert rows["use_os_lambda=True"]["mean@160"] == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    assert rows["use_os_lambda=True"]["budget_rule"] == "evaluation nearest to"
    code, out, _ = run_cli(capsys, "compare", "--root", study, "--at", "160", "--nearest")
    assert "@160 (nearest eval) mean [95% CI]" in out


def test_list_labels_and_evaluation_runs(study, capsys):
    rows = {r["id"]: r for r in rows_of(run_json(capsys, "list", "--root", study), "runs")}
    assert [rows[f"mazero_cpu/3m/{i}"]["label"] for i in range(1, 8)] == [LABEL_A] * 4 + [LABEL_B] * 2 + [LABEL_C]
    evaluation = rows["mazero_cpu/3m/8"]
    # listed at its checkpoint's t_env (its evaluation step), not at its t_max of 100000
    assert (evaluation["kind"], evaluation["t_env"], evaluation["status"]) == ("eval", 300, "COMPLETED")
    assert evaluation["notes"] == ["evaluation of checkpoint results/models/x"]
    code, out, _ = run_cli(capsys, "list", "--root", study)
    assert f"mazero_cpu/3m/1 {LABEL_A} 3m 1 train COMPLETED" in " ".join(out.split())


def test_aggregate_and_plot_count_seeds_once(study, capsys, tmp_path):
    doc = run_json(capsys, "aggregate", "--root", study, "--group-by", "num_simulations,use_os_lambda",
                   "--pairs", "mazero_cpu[num_simulations=8, use_os_lambda=True]:"
                              "mazero_cpu[num_simulations=50, use_os_lambda=True]")
    agg = {r["alg"]: r["runs"] for r in rows_of(doc, "aggregate")}
    assert agg == {"mazero_cpu[num_simulations=8, use_os_lambda=True]": 2,
                   "mazero_cpu[num_simulations=50, use_os_lambda=True]": 2,
                   "mazero_cpu[num_simulations=8, use_os_lambda=False]": 1}
    # final scores A {1, .75} vs B {.5, .25}: A wins every pair
    assert rows_of(doc, "improvement")[0]["p_improvement"] == 1.0
    doc = run_json(capsys, "plot", "--root", study, "--out", str(tmp_path / "curves"))
    assert {r["alg"]: r["seeds"] for r in rows_of(doc, "curves")} == {LABEL_A: 2, LABEL_B: 2, LABEL_C: 1}
