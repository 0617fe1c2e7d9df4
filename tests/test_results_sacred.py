"""Reading Sacred records (tools.results.records): real records written by a tiny Sacred Experiment through a
FileStorageObserver and a MongoObserver on mongomock, plus damaged run folders."""
import json
import os
import shutil
from datetime import datetime

import pytest

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
mongomock = pytest.importorskip("mongomock")
import mongomock.gridfs  # noqa: E402

from helpers.results_helpers import BAD, RETURNS_ONLY, STEPS, WIN, build_records, by_key, make_damaged_root, run_dir  # noqa: E402
from tools.results.records import load_file_runs, load_mongo_runs, mark_stale, read_run_dir  # noqa: E402


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """(file root, mongomock client, database name) holding the same runs."""
    mongomock.gridfs.enable_gridfs_integration()
    client = mongomock.MongoClient()
    root = str(tmp_path_factory.mktemp("results") / "sacred")
    build_records(root, client["sacred"])
    return root, client, "sacred"


def test_file_records_read_back(records):
    root, _, _ = records
    runs = by_key(load_file_runs(root))
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
    mongo = by_key(load_mongo_runs(client[db_name]))
    files = by_key(load_file_runs(root))
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
