"""Shared builders of the results-tool tests: real Sacred records written by a tiny Sacred Experiment (through a
FileStorageObserver and, optionally, a MongoObserver on mongomock), damaged copies of them, and `python -m
tools.results` called in process."""
import json
import os
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
gridfs = pytest.importorskip("gridfs")
from sacred import Experiment  # noqa: E402
from sacred.observers import FileStorageObserver, MongoObserver  # noqa: E402

from tools.results import cli  # noqa: E402
from tools.results.records import load_file_runs  # noqa: E402

STEPS = [0, 100, 200, 300]
T_MAX = 300
# test_battle_won_mean per (algorithm, map, seed) at STEPS; test_return_mean = 20 * win + 1
WIN = {
    ("qmix", "3m", 1): [0.0, 0.25, 0.5, 1.0],
    ("qmix", "3m", 2): [0.0, 0.5, 0.75, 0.75],
    ("vdn", "3m", 1): [0.0, 0.0, 0.25, 0.5],
    ("vdn", "3m", 2): [0.0, 0.25, 0.25, 0.25],
    ("qmix", "2s3z", 1): [0.0, 0.5, 1.0, 1.0],
    ("qmix", "2s3z", 2): [0.0, 0.0, 0.5, 0.5],
    ("vdn", "2s3z", 1): [0.0, 0.25, 0.5, 0.75],
    ("vdn", "2s3z", 2): [0.0, 0.0, 0.0, 0.25],
}
# a map without win rate (env "matrix", no map_name): only test_return_mean
RETURNS_ONLY = {("qmix", "matrix", 1): [0.0, 1.0, 2.0, 3.0], ("vdn", "matrix", 1): [0.0, 2.0, 2.0, 2.0]}
# runs that end badly: (alg, map, seed) -> (exception, values logged before it)
BAD = {("qmix", "3m", 3): (RuntimeError, [0.0, 1.0]), ("vdn", "3m", 3): (KeyboardInterrupt, [0.0])}


def log_metric(_run, key, t, value):
    """Like the harness Logger: log_scalar (metrics.json) plus _run.info key / key_T lists (info.json)."""
    _run.log_scalar(key, value, t)
    _run.info.setdefault(key, []).append(np.float64(value))  # numpy scalar -> jsonpickle dict in info.json
    _run.info.setdefault(key + "_T", []).append(t)


def sacred_experiment():
    ex = Experiment("pymarl", save_git_info=False)
    ex.add_config(name="", seed=0, env="", env_args={"map_name": None}, t_max=0)

    @ex.main
    def main(_run, _config):
        key = (_config["name"], _config["env_args"]["map_name"] or _config["env"], _config["seed"])
        if key in WIN:
            for t, win in zip(STEPS, WIN[key]):
                log_metric(_run, "test_battle_won_mean", t, win)
                log_metric(_run, "test_return_mean", t, 20 * win + 1)
        elif key in RETURNS_ONLY:
            for t, ret in zip(STEPS, RETURNS_ONLY[key]):
                log_metric(_run, "test_return_mean", t, ret)
        else:
            exc, wins = BAD[key]
            for t, win in zip(STEPS, wins):
                log_metric(_run, "test_battle_won_mean", t, win)
            raise exc()

    return ex


def build_records(root, db=None):
    """Run every configured (alg, map, seed) once; records in root/{name}/{map}/<id>/ and, with db, in Mongo."""
    ex = sacred_experiment()
    for key in list(WIN) + list(RETURNS_ONLY) + list(BAD):
        alg, map_name, seed = key
        env_args = {} if map_name == "matrix" else {"map_name": map_name}
        env = "matrix" if map_name == "matrix" else "smax"
        observers = [FileStorageObserver(os.path.join(root, alg, map_name))]
        if db is not None:
            observers.append(MongoObserver.create_from(db["runs"], gridfs.GridFS(db), metrics_collection=db["metrics"]))
        ex.observers[:] = observers
        config = {"name": alg, "seed": seed, "env": env, "env_args": env_args, "t_max": T_MAX}
        try:
            ex.run(config_updates=config, options={"--capture": "no"})
        except (RuntimeError, KeyboardInterrupt):
            assert key in BAD


def by_key(runs):
    return {(r.alg, r.map, r.seed): r for r in runs}


def run_dir(root, alg, map_name, seed):
    """Folder of one run (ids are shared with the MongoObserver, so they are not 1, 2, ... per folder)."""
    return os.path.join(root, by_key(load_file_runs(root))[(alg, map_name, seed)].id)


def make_damaged_root(records_root, dst_root):
    """A results tree with one intact run and damaged copies of it; returns {folder: what was done}."""
    src = run_dir(records_root, "qmix", "3m", 1)
    base = os.path.join(dst_root, "qmix", "3m")
    cases = {}

    def copy(name, what):
        path = os.path.join(base, name)
        shutil.copytree(src, path)
        cases[name] = what
        return path

    copy("1", "intact")
    os.remove(os.path.join(copy("2", "metrics.json removed"), "metrics.json"))
    path = copy("3", "metrics.json truncated, info.json removed")
    with open(os.path.join(path, "metrics.json"), "r+") as handle:
        handle.truncate(40)
    os.remove(os.path.join(path, "info.json"))
    path = copy("4", "config.json truncated")
    with open(os.path.join(path, "config.json"), "r+") as handle:
        handle.truncate(10)
    now = datetime.utcnow()
    for name, beat in (("5", now - timedelta(hours=1)), ("6", now)):
        path = copy(name, f"RUNNING, heartbeat {beat}")
        with open(os.path.join(path, "run.json")) as handle:
            doc = json.load(handle)
        doc.update(status="RUNNING", start_time=(beat - timedelta(minutes=5)).isoformat(), heartbeat=beat.isoformat(),
                   stop_time=None)
        with open(os.path.join(path, "run.json"), "w") as handle:
            json.dump(doc, handle)
    os.makedirs(os.path.join(base, "7"))
    cases["7"] = "empty folder"
    os.remove(os.path.join(copy("8", "run.json removed"), "run.json"))
    return cases


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run_cli(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def rows_of(doc, table):
    return [row for section in doc if section["table"] == table for row in section["rows"]]
