"""`python -m tools.results` on real Sacred records (built by tests/helpers/results_helpers.py): numbers checked against values
worked out by hand from the logged curves, every output format, the Mongo source, damaged folders, bad input."""
import csv
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta

import numpy as np
import pytest

from helpers.results_helpers import WIN, build_records, make_damaged_root, rows_of, run_cli, run_json
from tools.results import cli

mongomock = pytest.importorskip("mongomock")
import mongomock.gridfs  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    mongomock.gridfs.enable_gridfs_integration()
    client = mongomock.MongoClient()
    root = str(tmp_path_factory.mktemp("results") / "sacred")
    build_records(root, client["sacred"])
    return root, client


def by_map_alg(rows):
    return {(r["map"], r["alg"]): r for r in rows}


def test_list(records, capsys):
    root, _ = records
    rows = {(r["alg"], r["map"], r["seed"]): r for r in rows_of(run_json(capsys, "list", "--root", root), "runs")}
    assert len(rows) == 12
    assert rows[("qmix", "3m", 1)] | {"id": None, "start": None, "duration_s": None} == {
        "id": None, "alg": "qmix", "label": "qmix", "map": "3m", "seed": 1, "kind": "train", "status": "COMPLETED",
        "start": None,
        "duration_s": None, "t_env": 300, "metric": "test_battle_won_mean", "last": 1.0, "best": 1.0, "notes": []}
    assert (rows[("qmix", "3m", 2)]["last"], rows[("qmix", "3m", 2)]["best"]) == (0.75, 0.75)
    assert rows[("vdn", "matrix", 1)]["metric"] == "test_return_mean"
    assert (rows[("vdn", "matrix", 1)]["last"], rows[("vdn", "matrix", 1)]["best"]) == (2.0, 2.0)
    assert (rows[("qmix", "3m", 3)]["status"], rows[("qmix", "3m", 3)]["t_env"]) == ("FAILED", 100)
    assert rows[("vdn", "3m", 3)]["status"] == "INTERRUPTED"
    # --metric overrides the default per run
    rows = rows_of(run_json(capsys, "list", "--root", root, "--metric", "test_return_mean", "--alg", "qmix",
                            "--map", "3m", "--status", "completed"), "runs")
    assert sorted((r["seed"], r["last"], r["best"]) for r in rows) == [(1, 21.0, 21.0), (2, 16.0, 16.0)]


def test_repeated_root_reads_the_folders_together(records, capsys, tmp_path):
    # the qmix records in one folder, the rest in another: read together they are the whole set
    root, _ = records
    split = tmp_path / "split"
    shutil.copytree(os.path.join(root, "qmix"), split / "qmix_only" / "qmix")
    for alg in os.listdir(root):
        if alg != "qmix":
            shutil.copytree(os.path.join(root, alg), split / "others" / alg)
    whole = rows_of(run_json(capsys, "list", "--root", root), "runs")
    both = rows_of(run_json(capsys, "list", "--root", str(split / "qmix_only"), "--root", str(split / "others")),
                   "runs")
    key = lambda row: (row["alg"], row["map"], row["seed"], row["status"], row["last"])  # noqa: E731
    assert sorted(map(key, both)) == sorted(map(key, whole))
    assert {row["id"].split("/")[0] for row in both} == {"qmix_only", "others"}


def test_list_filters(records, capsys):
    root, _ = records

    def keys(*argv):
        return sorted((r["alg"], r["map"], r["seed"]) for r in rows_of(run_json(capsys, "list", "--root", root, *argv),
                                                                      "runs"))

    assert keys("--where", "env_args.map_name=2s3z", "--alg", "vdn") == [("vdn", "2s3z", 1), ("vdn", "2s3z", 2)]
    assert keys("--where", "seed=3") == [("qmix", "3m", 3), ("vdn", "3m", 3)]
    assert keys("--status", "FAILED,INTERRUPTED") == [("qmix", "3m", 3), ("vdn", "3m", 3)]
    assert keys("--map", "matrix", "--where", "env=matrix") == [("qmix", "matrix", 1), ("vdn", "matrix", 1)]
    assert keys("--since", "2h") != [] and keys("--since", "2999-01-01") == []


def test_compare_numbers(records, capsys):
    root, _ = records
    doc = run_json(capsys, "compare", "--root", root, "--map", "3m", "--at", "150,300,400", "--threshold", "0.5")
    rows = by_map_alg(rows_of(doc, "compare"))
    qmix, vdn = rows[("3m", "qmix")], rows[("3m", "vdn")]
    # @150 = evaluation at 100: qmix 0.25, 0.5; vdn 0.0, 0.25. Two seeds: bootstrap CI = [min, max]
    assert (qmix["seeds"], qmix["n@150"], qmix["mean@150"], qmix["ci_low@150"], qmix["ci_high@150"]) == \
        (2, 2, 0.375, 0.25, 0.5)
    assert (qmix["mean@300"], qmix["ci_low@300"], qmix["ci_high@300"]) == (0.875, 0.75, 1.0)
    assert (vdn["mean@150"], vdn["ci_low@150"], vdn["ci_high@150"]) == (0.125, 0.0, 0.25)
    assert (vdn["mean@300"], vdn["ci_low@300"], vdn["ci_high@300"]) == (0.375, 0.25, 0.5)
    # t_max = 300: nobody trained to 400 steps
    assert (qmix["n@400"], qmix["mean@400"]) == (0, None)
    # first reaches 0.5: qmix at 200 and 100; vdn seed 1 at 300, seed 2 never
    assert (qmix["reached"], qmix["steps_to_threshold"]) == (2, 150.0)
    assert (vdn["reached"], vdn["steps_to_threshold"]) == (1, 300.0)
    notes = doc[-1]["notes"]
    assert "qmix @400: 2 of 2 seeds counted out: seed 1 (run qmix/3m/" in notes[0]
    assert notes[0].endswith(", trained to 300 steps)")
    assert any("excluded: status FAILED" in n for n in notes)
    assert any("excluded: status INTERRUPTED" in n for n in notes)


def test_compare_include_incomplete_and_return_fallback(records, capsys):
    root, _ = records
    rows = by_map_alg(rows_of(run_json(capsys, "compare", "--root", root, "--include-incomplete"), "compare"))
    # final evaluations; the FAILED qmix seed 3 logged 0.0, 1.0: qmix {1.0, 0.75, 1.0}
    qmix = rows[("3m", "qmix")]
    assert qmix["seeds"] == 3 and qmix["mean@final"] == pytest.approx(2.75 / 3)
    # P(bootstrap mean = 0.75) = 1/27 > 2.5 %, so the CI ends are the extremes
    assert (qmix["ci_low@final"], qmix["ci_high@final"]) == (0.75, 1.0)
    # the matrix map has no win rate: test_return_mean; one seed each, so no CI
    assert rows[("matrix", "qmix")]["metric"] == "test_return_mean"
    assert (rows[("matrix", "qmix")]["mean@final"], rows[("matrix", "qmix")]["ci_low@final"]) == (3.0, None)


def test_aggregate_numbers(records, capsys):
    root, _ = records
    doc = run_json(capsys, "aggregate", "--root", root, "--map", "3m,2s3z", "--reps", "2000", "--seed", "3")
    agg = {r["alg"]: r for r in rows_of(doc, "aggregate")}
    # final scores: qmix 3m {1, .75}, 2s3z {1, .5}; vdn 3m {.5, .25}, 2s3z {.75, .25}
    # IQM of 4 runs = mean of the middle two; optimality gap = mean(1 - score)
    assert agg["qmix"]["iqm"] == pytest.approx(0.875) and agg["vdn"]["iqm"] == pytest.approx(0.375)
    assert agg["qmix"]["optimality_gap"] == pytest.approx(0.1875) and agg["vdn"]["optimality_gap"] == pytest.approx(0.5625)
    # stratified bootstrap: each map's two runs resampled within the map -> 16 equally likely outcomes; the extreme
    # outcomes have probability >= 1/16 > 2.5 %, so the CI ends are the IQM/gap of the worst/best resamples
    # (a pooled bootstrap could draw qmix {.5, .5, .5, .5}, IQM .5)
    assert (agg["qmix"]["iqm_ci_low"], agg["qmix"]["iqm_ci_high"]) == pytest.approx((0.625, 1.0))
    assert (agg["vdn"]["iqm_ci_low"], agg["vdn"]["iqm_ci_high"]) == pytest.approx((0.25, 0.625))
    assert (agg["qmix"]["og_ci_low"], agg["qmix"]["og_ci_high"]) == pytest.approx((0.0, 0.375))
    (poi,) = rows_of(doc, "improvement")
    # 3m: every qmix run beats every vdn run (1.0); 2s3z: 3 of 4 pairs (0.75)
    assert (poi["x"], poi["y"], poi["maps"], poi["p_improvement"]) == ("qmix", "vdn", 2, 0.875)
    # worst resample: 2s3z qmix {.5, .5} vs vdn {.75, .75} (probability 1/16) -> (1 + 0) / 2
    assert (poi["ci_low"], poi["ci_high"]) == (0.5, 1.0)


def test_aggregate_matches_exhaustive_stratified_bootstrap(records, capsys):
    """Exact bootstrap distribution by enumeration vs the tool's percentile CI, on scores at 200 steps."""
    root, _ = records
    agg = {r["alg"]: r for r in rows_of(run_json(capsys, "aggregate", "--root", root, "--map", "3m,2s3z",
                                                 "--at", "200", "--reps", "4000"), "aggregate")}
    for alg in ("qmix", "vdn"):
        tasks = [[WIN[(alg, m, s)][2] for s in (1, 2)] for m in ("3m", "2s3z")]
        outcomes = []
        for picks in itertools.product(*[list(itertools.product(t, repeat=2)) for t in tasks]):
            flat = np.sort(np.concatenate(picks))
            outcomes.append(flat[1:3].mean())
        outcomes = np.sort(outcomes)  # 16 equally likely IQMs
        cdf_low, cdf_high = outcomes[0], outcomes[-1]
        assert (np.mean(outcomes == cdf_low) > 0.025) and (np.mean(outcomes == cdf_high) > 0.025)
        assert (agg[alg]["iqm_ci_low"], agg[alg]["iqm_ci_high"]) == pytest.approx((cdf_low, cdf_high))


def test_aggregate_normalises_returns(records, capsys):
    root, _ = records
    # matrix: final returns qmix 3, vdn 2 -> min-max over all runs [2, 3]
    doc = run_json(capsys, "aggregate", "--root", root, "--map", "matrix")
    agg = {r["alg"]: r for r in rows_of(doc, "aggregate")}
    assert (agg["qmix"]["iqm"], agg["vdn"]["iqm"]) == (1.0, 0.0)
    assert (agg["qmix"]["optimality_gap"], agg["vdn"]["optimality_gap"]) == (0.0, 1.0)
    assert any("min-max normalised over all runs: [2, 3]" in n for n in doc[-1]["notes"])
    doc = run_json(capsys, "aggregate", "--root", root, "--map", "matrix", "--bounds", "matrix=0:4",
                   "--pairs", "vdn:qmix")
    agg = {r["alg"]: r for r in rows_of(doc, "aggregate")}
    assert (agg["qmix"]["iqm"], agg["vdn"]["iqm"]) == (0.75, 0.5)
    assert rows_of(doc, "improvement")[0]["p_improvement"] == 0.0


def test_plot_writes_png_and_pdf(records, capsys, tmp_path):
    root, _ = records
    out = tmp_path / "figs" / "curves"
    doc = run_json(capsys, "plot", "--root", root, "--map", "3m,2s3z", "--out", str(out), "--points", "31")
    png, pdf = (tmp_path / "figs" / "curves.png"), (tmp_path / "figs" / "curves.pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    rows = by_map_alg(rows_of(doc, "curves"))
    assert set(rows) == {("3m", "qmix"), ("3m", "vdn"), ("2s3z", "qmix"), ("2s3z", "vdn")}
    assert (rows[("3m", "qmix")]["from_step"], rows[("3m", "qmix")]["to_step"]) == (0.0, 300.0)
    assert rows[("3m", "qmix")]["final_mean"] == 0.875
    # --smooth 2: last value per seed = mean of the last two evaluations: (.5 + 1) / 2 and (.75 + .75) / 2
    doc = run_json(capsys, "plot", "--root", root, "--map", "3m", "--out", str(out) + ".png", "--smooth", "2")
    assert by_map_alg(rows_of(doc, "curves"))[("3m", "qmix")]["final_mean"] == 0.75
    # --include-incomplete: the INTERRUPTED vdn seed 3 only evaluated at step 0, so the curve is that one point
    doc = run_json(capsys, "plot", "--root", root, "--map", "3m", "--out", str(out), "--include-incomplete")
    vdn = by_map_alg(rows_of(doc, "curves"))[("3m", "vdn")]
    assert (vdn["seeds"], vdn["from_step"], vdn["to_step"], vdn["final_mean"]) == (3, 0.0, 0.0, 0.0)
    assert "3m vdn: curve stops at 0 steps, where the shortest seed ends (longest: 300)" in doc[0]["notes"]


def test_formats(records, capsys):
    root, _ = records
    argv = ["compare", "--root", root, "--map", "3m", "--at", "150", "--threshold", "0.5"]
    code, out, err = run_cli(capsys, *argv, "--format", "csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert [(r["alg"], r["mean@150"]) for r in table] == [("qmix", "0.375"), ("vdn", "0.125")]
    assert "note: " in err  # notes go to stderr so stdout stays CSV
    code, out, _ = run_cli(capsys, *argv, "--format", "markdown")
    lines = out.splitlines()
    assert lines[0] == "**3m: test_battle_won_mean**"
    assert lines[2] == "| alg | seeds | @150 (last eval <=) mean [95% CI] | steps to >= 0.5 (reached) |"
    assert lines[4] == "| qmix | 2 | 0.375 [0.250, 0.500] | 150 (2/2) |"
    code, out, _ = run_cli(capsys, *argv)
    assert "qmix  2      0.375 [0.250, 0.500]               150 (2/2)" in out
    code, out, err = run_cli(capsys, "aggregate", "--root", root, "--map", "3m,2s3z", "--format", "csv")
    kinds = [r["table"] for r in csv.DictReader(io.StringIO(out))]
    assert kinds == ["aggregate", "aggregate", "improvement"]


def test_mongo_source_gives_same_rows(records, capsys, monkeypatch):
    root, client = records
    monkeypatch.setattr(cli, "MongoClient", lambda url, **kw: client)
    for argv in (["list"], ["compare", "--at", "150,300", "--threshold", "0.5", "--include-incomplete"],
                 ["aggregate", "--map", "3m,2s3z"]):
        from_files = run_json(capsys, *argv, "--root", root)
        from_mongo = run_json(capsys, *argv, "--mongo", "localhost:27017", "--db", "sacred")
        for doc in (from_files, from_mongo):
            for section in doc:
                for row in section["rows"]:
                    for volatile in ("id", "start", "duration_s"):  # folder path vs _id; BSON keeps milliseconds
                        row.pop(volatile, None)
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        assert [sorted(s["rows"], key=key) for s in from_files] == [sorted(s["rows"], key=key) for s in from_mongo]
    # Sacred's -m form host:port:db names the database too
    assert run_json(capsys, "list", "--mongo", "localhost:27017:sacred") == run_json(capsys, "list", "--mongo",
                                                                                     "mongodb://localhost:27017")
    code, _, err = run_cli(capsys, "list", "--mongo", "localhost:27017:sacred", "--db", "other")
    assert code == 2 and "--mongo names database 'sacred' but --db says 'other'" in err
    code, _, err = run_cli(capsys, "list", "--mongo", "localhost:27017", "--root", root)
    assert code == 2 and "give one of --root, --mongo, --sql, not --root and --mongo" in err


def test_unreachable_mongo_is_a_clear_error(capsys):
    code, _, err = run_cli(capsys, "list", "--mongo", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")
    assert code == 2 and "cannot read MongoDB mongodb://127.0.0.1:1/" in err


def test_damaged_records_are_listed_not_fatal(records, capsys, tmp_path):
    make_damaged_root(records[0], str(tmp_path))
    rows = {r["id"]: r for r in rows_of(run_json(capsys, "list", "--root", str(tmp_path)), "runs")}
    assert len(rows) == 8
    assert rows["qmix/3m/2"]["notes"] == ["metrics.json missing; read info.json"] and rows["qmix/3m/2"]["last"] == 1.0
    assert rows["qmix/3m/3"]["notes"][0].startswith("metrics.json truncated") and rows["qmix/3m/3"]["last"] is None
    assert rows["qmix/3m/4"]["notes"][0].startswith("config.json truncated") and rows["qmix/3m/4"]["alg"] is None
    assert rows["qmix/3m/5"]["status"] == "RUNNING (stale heartbeat)"
    assert rows["qmix/3m/6"]["status"] == "RUNNING"
    assert rows["qmix/3m/7"]["notes"] == ["empty run folder"]
    assert rows["qmix/3m/8"]["status"] == "UNKNOWN"
    code, out, _ = run_cli(capsys, "list", "--root", str(tmp_path))
    assert code == 0 and "RUNNING (stale heartbeat)" in out and "empty run folder" in out
    stale = rows_of(run_json(capsys, "list", "--root", str(tmp_path), "--status", "stale"), "runs")
    assert [r["id"] for r in stale] == ["qmix/3m/5"]
    # compare uses the two COMPLETED runs with metrics (one read from info.json), copies of one seed: one seed and
    # one repeat; it says why the others are out
    doc = run_json(capsys, "compare", "--root", str(tmp_path))
    (row,) = rows_of(doc, "compare")
    assert (row["seeds"], row["repeats"], row["mean@final"]) == (1, 1, 1.0)
    notes = doc[-1]["notes"]
    assert "3m qmix seed 1: 2 runs (qmix/3m/1, qmix/3m/2) counted as one seed (run qmix/3m/1, the earliest); " \
           "identical test_battle_won_mean curves" in notes
    for run_id, why in (("3", "has no test_battle_won_mean values"), ("4", "skipped: config.json truncated"),
                        ("5", "excluded: status RUNNING (stale heartbeat)"), ("6", "excluded: status RUNNING"),
                        ("7", "skipped: empty run folder"), ("8", "excluded: status UNKNOWN")):
        assert any(f"run qmix/3m/{run_id} " in n and why in n for n in notes), (run_id, notes)


def test_bad_input_gives_message_and_nonzero_exit(records, capsys, tmp_path):
    root, _ = records
    code, _, err = run_cli(capsys, "list", "--root", str(tmp_path / "missing"))
    assert code == 2 and "results directory not found" in err
    for argv in (["compare", "--root", root, "--at", "abc"], ["list", "--root", root, "--where", "novalue"],
                 ["list", "--root", root, "--since", "yesterday"], ["aggregate", "--root", root, "--bounds", "3m=1:0"],
                 ["plot", "--root", root, "--smooth", "0"], ["list", "--root", root, "--format", "xml"],
                 ["compare", "--root", root, "--at", "1e999"], ["compare", "--root", root, "--threshold", "nan"],
                 ["compare", "--root", root, "--threshold", "inf"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2, argv
    err = capsys.readouterr().err
    assert "not a step count: 'abc'" in err and "not a finite step count: '1e999'" in err
    assert "--threshold: expected a finite number, got 'nan'" in err
    code, _, err = run_cli(capsys, "aggregate", "--root", root, "--pairs", "qmix:mazero")
    assert code == 1 and "--pairs names algorithms without scores: mazero" in err
    code, _, err = run_cli(capsys, "aggregate", "--root", root, "--bounds", "8m=0:20")
    assert code == 1 and "--bounds names maps without runs: 8m" in err
    code, _, err = run_cli(capsys, "compare", "--root", root, "--alg", "mazero")
    assert code == 1 and "no runs to compare" in err


@pytest.mark.subprocess
def test_module_entry_point(records):
    """`python -m tools.results` with src/ on PYTHONPATH, as documented."""
    root, _ = records
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run([sys.executable, "-m", "tools.results", "compare", "--root", root, "--map", "3m",
                           "--at", "50k", "--format", "markdown"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| qmix | 2 | - (n=0/2) |" in done.stdout  # nobody trained to 50000 steps


@pytest.mark.subprocess
@pytest.mark.slow
def test_records_of_the_harness(capsys, tmp_path):
    """Two short runs of src/main.py (matrix game) read back: the record layout and metric names of the harness."""
    for alg in ("qmix", "vdn"):
        done = subprocess.run([sys.executable, os.path.join(SRC, "main.py"), f"--config={alg}", "--env-config=matrix",
                               "with", "seed=1", "t_max=300", "test_interval=100", "test_nepisode=2",
                               "log_interval=100", "runner_log_interval=100", "learner_log_interval=100",
                               f"local_results_path={tmp_path}"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    root = str(tmp_path / "sacred")
    rows = rows_of(run_json(capsys, "list", "--root", root), "runs")
    assert sorted((r["id"].rsplit("/", 1)[0], r["status"], r["metric"], r["notes"] == []) for r in rows) == [
        ("qmix/matrix", "COMPLETED", "test_return_mean", True), ("vdn/matrix", "COMPLETED", "test_return_mean", True)]
    assert all(r["t_env"] > 300 for r in rows)  # the loop runs until t_env > t_max
    compared = by_map_alg(rows_of(run_json(capsys, "compare", "--root", root, "--at", "300"), "compare"))
    assert set(compared) == {("matrix", "qmix"), ("matrix", "vdn")}
    assert all(r["n@300"] == 1 and r["metric"] == "test_return_mean" for r in compared.values())
    run_json(capsys, "plot", "--root", root, "--out", str(tmp_path / "curves"))
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "curves.pdf").stat().st_size > 0


def test_default_root_is_the_checkouts_results_from_any_directory(records, capsys, tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "main.py").write_text("")
    monkeypatch.setattr(cli, "REPO_ROOT", str(checkout))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = run_cli(capsys, "list")
    assert code == 2 and f"results directory not found: {checkout / 'results' / 'sacred'}" in err
    assert "give --root DIR, --mongo URL or --sql URL" in err
    shutil.copytree(records[0], checkout / "results" / "sacred")
    assert len(rows_of(run_json(capsys, "list"), "runs")) == 12


def test_a_second_clone_reads_its_own_results_and_says_which(records, capsys, tmp_path, monkeypatch):
    installed, clone = tmp_path / "installed", tmp_path / "clone"
    for checkout in (installed, clone):
        (checkout / "src").mkdir(parents=True)
        (checkout / "src" / "main.py").write_text("")
    shutil.copytree(records[0], installed / "results" / "sacred")
    shutil.copytree(os.path.join(records[0], "qmix"), clone / "results" / "sacred" / "qmix")
    monkeypatch.setattr(cli, "REPO_ROOT", str(installed))
    monkeypatch.chdir(clone / "src")
    code, out, err = run_cli(capsys, "list", "--format", "json")
    assert code == 0 and f"reading {clone / 'results' / 'sacred'}" in err
    assert {row["alg"] for row in json.loads(out)[0]["rows"]} == {"qmix"}


def test_compare_timing_columns(records, capsys, tmp_path):
    root = str(tmp_path / "sacred")
    shutil.copytree(records[0], root)
    seconds = {}
    for config_file in sorted(glob_configs(root)):
        with open(config_file) as f:
            config = json.load(f)
        run_file = os.path.join(os.path.dirname(config_file), "run.json")
        with open(run_file) as f:
            run = json.load(f)
        if config.get("name") == "qmix" and config["env_args"]["map_name"] == "3m" and run["status"] == "COMPLETED":
            seconds[config["seed"]] = 100.0 * config["seed"]  # seed 1 ran 100 s, seed 2 200 s (t_max 300 each)
            start = datetime(2026, 1, 1)
            run.update(start_time=start.isoformat(),
                       stop_time=(start + timedelta(seconds=seconds[config["seed"]])).isoformat())
            with open(run_file, "w") as f:
                json.dump(run, f)
    assert sorted(seconds) == [1, 2]
    doc = run_json(capsys, "compare", "--root", root, "--map", "3m", "--alg", "qmix", "--timing")
    qmix = by_map_alg(rows_of(doc, "compare"))[("3m", "qmix")]
    assert qmix["wall_clock_s"] == 150.0 and qmix["env_steps_per_s"] == pytest.approx((300 / 100 + 300 / 200) / 2)
    code, out, _ = run_cli(capsys, "compare", "--root", root, "--map", "3m", "--alg", "qmix", "--timing")
    assert code == 0 and "wall-clock (mean)" in out and "0:02:30" in out and "2.2" in out


def glob_configs(root):
    for folder, _, files in os.walk(root):
        if "config.json" in files and "_sources" not in folder:
            yield os.path.join(folder, "config.json")
