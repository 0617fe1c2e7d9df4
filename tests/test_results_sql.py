"""`tools.results --sql`: records written by Sacred's SqlObserver (the `-s URL` flag) into SQLite read back with the
same tables as the FileStorageObserver records of the same runs."""
import json
import os
import re
import sqlite3

import pytest

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
pytest.importorskip("sqlalchemy")
from sacred.observers import FileStorageObserver, SqlObserver  # noqa: E402
from helpers.results_helpers import BAD, RETURNS_ONLY, T_MAX, WIN, rows_of, run_cli, run_json, sacred_experiment  # noqa: E402


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(file root, sqlite URL): every run of test_results_sacred recorded by both observers at once."""
    base = tmp_path_factory.mktemp("sql")
    root, url = str(base / "sacred"), f"sqlite:///{base / 'runs.db'}"
    ex = sacred_experiment()
    for key in list(WIN) + list(RETURNS_ONLY) + list(BAD):
        alg, map_name, seed = key
        env_args = {} if map_name == "matrix" else {"map_name": map_name}
        ex.observers[:] = [FileStorageObserver(os.path.join(root, alg, map_name)), SqlObserver(url)]
        config = {"name": alg, "seed": seed, "env": "matrix" if map_name == "matrix" else "smax",
                  "env_args": env_args, "t_max": T_MAX}
        try:
            ex.run(config_updates=config, options={"--capture": "no"})
        except (RuntimeError, KeyboardInterrupt):
            assert key in BAD
    return root, url


def _without_volatile(doc):
    for section in doc:
        for row in section["rows"]:
            for volatile in ("id", "start", "duration_s"):  # folder path vs Sacred run id
                row.pop(volatile, None)
        section["notes"] = [re.sub(r"run [^ ,)]+", "run ID", n) for n in section["notes"]]
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    return [(s["title"], sorted(s["rows"], key=key), s["notes"]) for s in doc]


def test_sql_records_give_the_file_tables(both, capsys):
    root, url = both
    runs = rows_of(run_json(capsys, "list", "--sql", url), "runs")
    assert len(runs) == len(WIN) + len(RETURNS_ONLY) + len(BAD)
    assert {(r["alg"], r["map"], r["seed"]): r["status"] for r in runs}[("vdn", "3m", 3)] == "INTERRUPTED"
    for argv in (["list"],
                 ["compare", "--at", "150,300", "--threshold", "0.5", "--include-incomplete", "--reps", "200"],
                 ["aggregate", "--map", "3m,2s3z", "--reps", "200"]):
        from_files = _without_volatile(run_json(capsys, *argv, "--root", root))
        from_sql = _without_volatile(run_json(capsys, *argv, "--sql", url))
        assert from_sql == from_files, argv
    qmix = {r["alg"]: r for r in rows_of(run_json(capsys, "compare", "--sql", url, "--map", "3m", "--at", "300"),
                                         "compare")}["qmix"]
    assert (qmix["seeds"], qmix["mean@300"], qmix["ci_low@300"], qmix["ci_high@300"]) == (2, 0.875, 0.75, 1.0)


def test_sql_errors_name_the_database(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    code, _, err = run_cli(capsys, "list", "--sql", f"sqlite:///{missing}")
    assert code == 2 and f"SQLite database not found: {missing}" in err
    assert not missing.exists()  # not created by looking
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x INTEGER)").connection.commit()
    code, _, err = run_cli(capsys, "list", "--sql", f"sqlite:///{other}")
    assert code == 2 and "has no `run` table: not a database of Sacred's SqlObserver (-s)" in err
    code, _, err = run_cli(capsys, "list", "--sql", "nosuchdialect://host/db")
    assert code == 2 and "cannot open SQL database 'nosuchdialect://host/db'" in err
    code, _, err = run_cli(capsys, "list", "--sql", f"sqlite:///{other}", "--root", str(tmp_path))
    assert code == 2 and "give one of --root, --mongo, --sql, not --root and --sql" in err
