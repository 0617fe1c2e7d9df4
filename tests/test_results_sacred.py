"""Reading Sacred records (tools.results.records): real records written by a tiny Sacred Experiment through a
FileStorageObserver and a MongoObserver on mongomock, plus damaged run folders."""
import json
import os
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
gridfs = pytest.importorskip("gridfs")
mongomock = pytest.importorskip("mongomock")
import mongomock.gridfs  # noqa: E402
from sacred import Experiment  # noqa: E402
from sacred.observers import FileStorageObserver, MongoObserver  # noqa: E402

from tools.results.records import load_file_runs, load_mongo_runs, mark_stale, read_run_dir  # noqa: E402

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


def _log(_run, key, t, value):
    """Like the harness Logger: log_scalar (metrics.json) plus _run.info key / key_T lists (info.json)."""
    _run.log_scalar(key, value, t)
    _run.info.setdefault(key, []).append(np.float64(value))  # numpy scalar -> jsonpickle dict in info.json
    _run.info.setdefault(key + "_T", []).append(t)


def _experiment():
    ex = Experiment("pymarl", save_git_info=False)
    ex.add_config(name="", seed=0, env="", env_args={"map_name": None}, t_max=0)

    @ex.main
    def main(_run, _config):
        key = (_config["name"], _config["env_args"]["map_name"] or _config["env"], _config["seed"])
        if key in WIN:
            for t, win in zip(STEPS, WIN[key]):
                _log(_run, "test_battle_won_mean", t, win)
                _log(_run, "test_return_mean", t, 20 * win + 1)
        elif key in RETURNS_ONLY:
            for t, ret in zip(STEPS, RETURNS_ONLY[key]):
                _log(_run, "test_return_mean", t, ret)
        else:
            exc, wins = BAD[key]
            for t, win in zip(STEPS, wins):
                _log(_run, "test_battle_won_mean", t, win)
            raise exc()

    return ex


def build_records(root, db=None):
    """Run every configured (alg, map, seed) once; records in root/{name}/{map}/<id>/ and, with db, in Mongo."""
    ex = _experiment()
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


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """(file root, mongomock client, database name) holding the same runs."""
    mongomock.gridfs.enable_gridfs_integration()
    client = mongomock.MongoClient()
    root = str(tmp_path_factory.mktemp("results") / "sacred")
    build_records(root, client["sacred"])
    return root, client, "sacred"


def _by_key(runs):
    return {(r.alg, r.map, r.seed): r for r in runs}


def run_dir(root, alg, map_name, seed):
    """Folder of one run (ids are shared with the MongoObserver, so they are not 1, 2, ... per folder)."""
    return os.path.join(root, _by_key(load_file_runs(root))[(alg, map_name, seed)].id)


def test_file_records_read_back(records):
    root, _, _ = records
    runs = _by_key(load_file_runs(root))
    assert set(runs) == set(WIN) | set(RETURNS_ONLY) | set(BAD)
    run = runs[("qmix", "3m", 1)]
    assert run.status == "COMPLETED" and run.problems == []
    steps, values = run.metrics["test_battle_won_mean"]
    assert steps.tolist() == STEPS and values.tolist() == WIN[("qmix", "3m", 1)]
    assert run.metrics["test_return_mean"][1].tolist() == [1.0, 6.0, 11.0, 21.0]
    assert run.final_t_env == 300 and run.t_reached == 300
    assert run.duration is not None and run.duration >= 0
    assert runs[("qmix", "matrix", 1)].map == "matrix"  # no map_name: falls back to env
    assert runs[("qmix", "matrix", 1)].default_metric() == "test_return_mean"
    assert runs[("qmix", "3m", 3)].status == "FAILED"
    assert runs[("qmix", "3m", 3)].t_reached == 100  # not COMPLETED: t_max does not count
    assert runs[("vdn", "3m", 3)].status == "INTERRUPTED"
    # run folders live under {name}/{map}/<id>; _sources folders are not runs
    assert runs[("vdn", "2s3z", 2)].id.startswith("vdn/2s3z/")


def test_info_json_only_gives_same_metrics(records, tmp_path):
    """pymarl-style record: no metrics.json; numpy scalars in info.json are jsonpickle dicts."""
    root, _, _ = records
    src = run_dir(root, "vdn", "2s3z", 1)
    with open(os.path.join(src, "info.json")) as handle:
        assert json.load(handle)["test_battle_won_mean"][0]["py/object"] == "numpy.float64"
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    os.remove(dst / "metrics.json")
    run = read_run_dir(str(dst), "run")
    assert run.metrics["test_battle_won_mean"][1].tolist() == WIN[("vdn", "2s3z", 1)]
    assert run.metrics["test_battle_won_mean"][0].tolist() == STEPS
    assert run.problems == ["metrics.json missing; read info.json"]


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


def test_damaged_folders_are_read_with_reasons(records, tmp_path):
    make_damaged_root(records[0], str(tmp_path))
    runs = {r.id: r for r in load_file_runs(str(tmp_path))}
    mark_stale(runs.values(), datetime.utcnow(), minutes=10)
    assert sorted(runs) == [f"qmix/3m/{i}" for i in range(1, 9)]
    assert runs["qmix/3m/1"].problems == []
    assert runs["qmix/3m/2"].metrics["test_battle_won_mean"][1].tolist() == WIN[("qmix", "3m", 1)]
    assert runs["qmix/3m/3"].metrics == {}
    assert runs["qmix/3m/3"].problems[0].startswith("metrics.json truncated or invalid JSON")
    assert runs["qmix/3m/4"].alg is None and runs["qmix/3m/4"].problems[0].startswith("config.json truncated")
    assert runs["qmix/3m/5"].status_label == "RUNNING (stale heartbeat)"
    assert runs["qmix/3m/5"].duration == 300.0 and runs["qmix/3m/5"].stop_time is None
    assert runs["qmix/3m/6"].status_label == "RUNNING"
    assert runs["qmix/3m/7"].problems == ["empty run folder"] and runs["qmix/3m/7"].status == "UNKNOWN"
    assert runs["qmix/3m/8"].status == "UNKNOWN" and runs["qmix/3m/8"].problems == ["run.json missing"]


def test_mongo_records_match_file_records(records):
    root, client, db_name = records
    mongo = _by_key(load_mongo_runs(client[db_name]))
    files = _by_key(load_file_runs(root))
    assert set(mongo) == set(files)
    for key, run in files.items():
        other = mongo[key]
        assert (other.status, other.config, other.problems) == (run.status, run.config, run.problems)
        assert set(other.metrics) == set(run.metrics)
        for name, (steps, values) in run.metrics.items():
            assert other.metrics[name][0].tolist() == steps.tolist()
            assert other.metrics[name][1].tolist() == values.tolist()
        # BSON keeps milliseconds
        assert abs((other.start_time - run.start_time).total_seconds()) < 0.002


def test_missing_root_is_an_error(tmp_path):
    from tools.results.records import RecordError

    with pytest.raises(RecordError, match="results directory not found"):
        load_file_runs(str(tmp_path / "nope"))


def test_hand_written_pymarl_info_with_bad_entries(tmp_path):
    """A pymarl2-style folder (info.json only) whose lists disagree in length and hold an undecodable value."""
    run_path = tmp_path / "7"
    run_path.mkdir()
    (run_path / "config.json").write_text(json.dumps({"name": "qmix", "seed": 4, "env": "sc2",
                                                      "env_args": {"map_name": "8m"}, "t_max": 400}))
    (run_path / "run.json").write_text(json.dumps({"status": "COMPLETED", "start_time": "2024-05-01T10:00:00",
                                                   "stop_time": "2024-05-01T11:30:05.5"}))
    torch_value = {"py/reduce": [{"py/function": "torch._utils._rebuild_tensor_v2"}]}
    (run_path / "info.json").write_text(json.dumps({
        "test_return_mean": [1.0, {"py/object": "numpy.float32", "dtype": "float32", "value": 2.5}, 3.0, 4.0],
        "test_return_mean_T": [300, 100, 200, 400, 500],
        "loss": [0.5, torch_value], "loss_T": [100, 200],
        "episode": [10], "unpaired": [1, 2]}))
    run = read_run_dir(str(run_path), "7")
    assert (run.alg, run.map, run.seed, run.duration) == ("qmix", "8m", 4, 5405.5)
    steps, values = run.metrics["test_return_mean"]
    assert steps.tolist() == [100, 200, 300, 400] and values.tolist() == [2.5, 3.0, 1.0, 4.0]  # sorted by step
    assert run.metrics["loss"][1].tolist() == [0.5]
    assert set(run.metrics) == {"test_return_mean", "loss"}  # keys without a _T list are not curves
    assert run.problems == ["info.json test_return_mean: 5 steps but 4 values; kept the first 4",
                            "info.json loss: dropped 1 entries that are not numbers",
                            "metrics.json missing; read info.json"]
