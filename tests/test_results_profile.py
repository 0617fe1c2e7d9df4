"""`python -m tools.results profile`: per-stretch timing from the time profile a MAZero run logs (cumulative
`time_share_*`, `env_steps_per_second`, `updates_per_second`), checked against seconds chosen by hand and against
the committed records of docs/mazero_perf.md."""
import json
import os

import pytest

from tools.results import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = [1000, 2000, 3000, 4000]
ELAPSED = [100.0, 250.0, 300.0, 500.0]  # wall-clock seconds since the loop started, at each profile log
UPDATES = [200, 400, 600, 800]
SECONDS = {"selfplay_search": [10.0, 40.0, 50.0, 90.0], "gradient": [80.0, 190.0, 230.0, 380.0],
           "env": [5.0, 10.0, 15.0, 20.0]}  # cumulative seconds per part


def _series(values):
    return {"steps": STEPS, "values": values, "timestamps": [None] * len(STEPS)}


def write_run(root, run_id, config, status="COMPLETED", profile=True):
    folder = os.path.join(root, run_id)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"name": "mazero", "seed": 1, "env": "smax", "env_args": {"map_name": "3m"}, "t_max": 4000,
                   "checkpoint_path": ""} | config, f)
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"status": status, "start_time": "2026-01-01T00:00:00", "stop_time": "2026-01-01T00:08:20"}, f)
    metrics = {"test_battle_won_mean": _series([0.0, 0.25, 0.5, 0.5])}
    if profile:
        metrics["env_steps_per_second"] = _series([t / w for t, w in zip(STEPS, ELAPSED)])
        metrics["updates_per_second"] = _series([u / w for u, w in zip(UPDATES, ELAPSED)])
        for part, seconds in SECONDS.items():
            metrics[f"time_share_{part}"] = _series([s / w for s, w in zip(seconds, ELAPSED)])
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)


def profile_rows(capsys, *argv):
    code = cli.main(["profile", *argv, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    return [row for section in doc for row in section["rows"]], [n for section in doc for n in section["notes"]]


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "sacred")
    write_run(root, "mazero/1", {})
    return root


def test_stretches_from_hand_chosen_seconds(root, capsys):
    rows, notes = profile_rows(capsys, "--root", root, "--at", "2000,4000")
    assert notes == []
    first, second, whole = rows
    assert (first["from_step"], first["to_step"], second["from_step"], second["to_step"]) == (0, 2000, 2000, 4000)
    assert whole["whole_run"] and (whole["from_step"], whole["to_step"]) == (0, 4000)
    for row in (first, second):
        assert row["wall_clock_s"] == pytest.approx(250.0)
        assert row["env_steps_per_s"] == pytest.approx(8.0) and row["updates_per_s"] == pytest.approx(1.6)
    # 0-2000: self-play 40 s, gradient 190 s, env 10 s over 2000 env steps and 250 s
    assert first["ms_per_unit@selfplay_search"] == pytest.approx(20.0) and first["share@selfplay_search"] == \
        pytest.approx(0.16)
    assert first["ms_per_unit@gradient"] == pytest.approx(95.0) and first["share@gradient"] == pytest.approx(0.76)
    assert first["ms_per_unit@env"] == pytest.approx(5.0) and first["share@other"] == pytest.approx(0.04)
    # 2000-4000: self-play 50 s, gradient 190 s, env 10 s
    assert second["ms_per_unit@selfplay_search"] == pytest.approx(25.0) and second["share@other"] == \
        pytest.approx(0.0, abs=1e-12)
    assert whole["wall_clock_s"] == pytest.approx(500.0) and whole["share@gradient"] == pytest.approx(0.76)


def test_per_update_nearest_and_the_whole_run_alone(root, capsys):
    rows, _ = profile_rows(capsys, "--root", root, "--at", "2600", "--per", "update")
    assert [(r["from_step"], r["to_step"]) for r in rows] == [(0, 2000), (0, 4000)]
    assert rows[0]["ms_per_unit@selfplay_search"] == pytest.approx(100.0)  # 40 s over 400 updates
    rows, notes = profile_rows(capsys, "--root", root, "--at", "2600", "--nearest")
    assert [(r["from_step"], r["to_step"]) for r in rows] == [(0, 3000), (0, 4000)]
    assert notes == ["run mazero/1: stretches stop at 3000 env steps, the profile log nearest to 2600; the run "
                     "goes on to 4000"]
    rows, _ = profile_rows(capsys, "--root", root)
    assert len(rows) == 1 and rows[0]["whole_run"]


def test_runs_without_a_usable_profile_are_named(root, capsys):
    write_run(root, "qmix/1", {"name": "qmix"}, profile=False)
    write_run(root, "mazero/2", {"seed": 2, "checkpoint_path": "results/models/x"})
    write_run(root, "mazero/3", {"seed": 3}, status="RUNNING")
    rows, notes = profile_rows(capsys, "--root", root)
    assert [r["run"] for r in rows] == ["mazero/1"]
    assert "run qmix/1 (qmix, 3m) skipped: no time profile (env_steps_per_second, updates_per_second not " \
           "logged)" in notes
    assert "run mazero/2 (mazero, 3m) skipped: resumed from a checkpoint: its profile starts at an unlogged " \
           "t_env" in notes
    assert any(n.startswith("run mazero/3 (mazero, 3m) excluded: status RUNNING") for n in notes)
    rows, _ = profile_rows(capsys, "--root", root, "--include-incomplete")
    assert [r["run"] for r in rows] == ["mazero/1", "mazero/3"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["profile", "--root", root, "--metric", "loss"])
    assert exit_info.value.code == 2 and "--metric: profile reports the run's time profile" in capsys.readouterr().err
    code = cli.main(["profile", "--root", root, "--alg", "qmix"])
    _, err = capsys.readouterr()
    assert code == 1 and "error: no run with a time profile" in err and "run qmix/1 (qmix, 3m) skipped" in err


def test_committed_records_agree_with_their_own_logs(capsys):
    """The whole-run row of a real record: its span and speed are those of the run's last profile log, and the
    parts' shares add up to (nearly) the whole wall-clock."""
    records = os.path.join(REPO, "records", "mazero_perf_3m")
    rows, _ = profile_rows(capsys, "--root", records, "--include-incomplete")
    assert rows
    for row in rows:
        with open(os.path.join(records, row["run"], "metrics.json")) as f:
            logged = json.load(f)["env_steps_per_second"]
        assert row["to_step"] == logged["steps"][-1]
        assert row["env_steps_per_s"] == pytest.approx(logged["values"][-1])
        shares = [v for k, v in row.items() if k.startswith("share@") and k != "share@other"]
        assert 0.99 < sum(shares) <= 1.0 + 1e-9
    markdown = cli.main(["profile", "--root", records, "--include-incomplete", "--format", "markdown"])
    assert markdown == 0 and "| gradient ms/env step (share) |" in capsys.readouterr().out
