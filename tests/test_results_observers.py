"""The observers of src/main.py as `tools.results` reads them: two algorithms started together with one `-F DIR`
both record completely, and a run with Sacred's `-s sqlite:///...` (started at the same time) is read back with
`--sql` from a directory outside the repository."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("sqlalchemy")
from helpers.results_helpers import rows_of, run_json  # noqa: E402

pytestmark = pytest.mark.subprocess

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
TINY = ["seed=3", "t_max=60", "test_interval=30", "test_nepisode=2", "log_interval=30", "runner_log_interval=30",
        "learner_log_interval=30", "save_git_info=False"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Started together on the matrix game: QMIX and VDN with the same -F DIR, and QMIX with -s SQLite."""
    base = tmp_path_factory.mktemp("observers")
    extra, url = base / "extra", f"sqlite:///{base / 'runs.db'}"
    procs = {}
    for name, alg, flags in (("qmix -F", "qmix", ["-F", str(extra)]), ("vdn -F", "vdn", ["-F", str(extra)]),
                             ("qmix -s", "qmix", ["-s", url])):
        results = base / ("sql" if "-s" in flags else "files")
        argv = [sys.executable, os.path.join(SRC, "main.py"), f"--config={alg}", "--env-config=matrix", *flags,
                "with", *TINY, f"local_results_path={results}"]
        procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}:\n{out[-3000:]}"
    return base, extra, url


def test_shared_extra_file_storage_records_both_runs(runs, capsys):
    base, extra, _ = runs
    base = base / "files"
    # each default folder numbered its run 1; DIR holds both runs under their own numbers
    assert sorted(os.listdir(base / "sacred" / "qmix" / "matrix")) == ["1", "_sources"]
    assert sorted(os.listdir(base / "sacred" / "vdn" / "matrix")) == ["1", "_sources"]
    assert sorted(d for d in os.listdir(extra) if d.isdigit()) == ["1", "2"]
    rows = rows_of(run_json(capsys, "list", "--root", str(extra)), "runs")
    assert sorted((r["alg"], r["status"], r["notes"]) for r in rows) == [("qmix", "COMPLETED", []),
                                                                         ("vdn", "COMPLETED", [])]
    defaults = {r["alg"]: r for r in rows_of(run_json(capsys, "list", "--root", str(base / "sacred")), "runs")}
    for row in rows:  # the -F copy is the same record as the default one
        assert (row["t_env"], row["last"], row["best"]) == tuple(defaults[row["alg"]][k]
                                                                 for k in ("t_env", "last", "best"))


def test_sql_observer_run_read_back(runs, capsys):
    base, _, url = runs
    # the database numbers its runs from 0; the default folder still takes its own next number
    assert sorted(os.listdir(base / "sql" / "sacred" / "qmix" / "matrix")) == ["1", "_sources"]
    (row,) = rows_of(run_json(capsys, "list", "--sql", url), "runs")
    (from_file,) = rows_of(run_json(capsys, "list", "--root", str(base / "sql" / "sacred")), "runs")
    assert (row["alg"], row["map"], row["seed"], row["status"], row["metric"]) == \
        ("qmix", "matrix", 3, "COMPLETED", "test_return_mean")
    assert (row["t_env"], row["last"], row["best"]) == (from_file["t_env"], from_file["last"], from_file["best"])
    # the command line, from a directory outside the repository
    done = subprocess.run([sys.executable, "-m", "tools.results", "list", "--sql", url], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=SRC), cwd=base, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 runs\n") and " qmix " in done.stdout and " COMPLETED " in done.stdout
