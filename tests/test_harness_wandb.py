"""Weights & Biases logging: an offline run holds the same statistics as Sacred, the config and the checkpoints."""
import glob
import json
import os
import sys
from types import SimpleNamespace

import pytest

from helpers.harness_helpers import load_json, run_main, sacred_runs
from utils.logging import Logger

BLOCK_SIZE = 32768  # W&B's transaction log (.wandb) uses LevelDB's log format: 32 KiB blocks of records
HEADER_SIZE = 7  # ":W&B", a 2-byte key and a version byte at the start of the file
FULL, LAST = 1, 4  # record kinds that end a record


def wandb_records(path):
    """The protobuf records of an offline run's .wandb file (a run, its history rows, ...)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    position, pending = HEADER_SIZE, b""
    while position + HEADER_SIZE <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < HEADER_SIZE:  # block trailer: zero padding
            position += left_in_block
            continue
        length = int.from_bytes(data[position + 4:position + 6], "little")
        kind = data[position + 6]
        pending += data[position + HEADER_SIZE:position + HEADER_SIZE + length]
        position += HEADER_SIZE + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def read_offline_run(run_dir):
    """(config, history rows) of an offline W&B run folder."""
    (log_file,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    config, rows = {}, []
    for record in wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return config, rows


@pytest.mark.subprocess
def test_offline_run_logs_the_sacred_statistics_config_and_checkpoints(tmp_path):
    run_main(["--config=qmix", "--env-config=matrix", "with", "use_wandb=True", "t_max=60", "test_interval=30",
              "test_nepisode=4", "log_interval=30", "runner_log_interval=30", "learner_log_interval=30",
              "batch_size=8", "save_model=True", "save_model_interval=30", "wandb_save_model=True",
              "save_git_info=False"], tmp_path)
    (run_dir,) = glob.glob(os.path.join(str(tmp_path), "wandb", "offline-run-*"))
    config, rows = read_offline_run(run_dir)
    assert config["name"] == "qmix" and config["use_wandb"] is True and config["wandb_mode"] == "offline"
    assert config["env_args"]["game"] == "climbing"

    logged = {}
    for row in rows:
        for key, value in row.items():
            if not key.startswith("_") and key != "t_env":
                logged.setdefault(key, []).append((row["t_env"], value))
    (sacred_dir,) = sacred_runs(tmp_path, "qmix", "matrix")
    metrics = load_json(sacred_dir, "metrics.json")
    assert "test_return_mean" in logged and "loss" in logged
    assert set(metrics) <= set(logged)
    for key, metric in metrics.items():
        assert [t for t, _ in logged[key]] == metric["steps"], key
        assert [value for _, value in logged[key]] == pytest.approx(metric["values"]), key

    saved = sorted(os.listdir(os.path.join(run_dir, "files", "models")), key=int)
    (token,) = os.listdir(os.path.join(str(tmp_path), "models"))
    assert saved == sorted(os.listdir(os.path.join(str(tmp_path), "models", token)), key=int) and len(saved) >= 2
    assert sorted(os.listdir(os.path.join(run_dir, "files", "models", saved[-1]))) == ["agent.th", "checkpoint.json", "mixer.th", "opt.th"]


def wandb_config(**overrides):
    config = {"name": "qmix", "env": "matrix", "env_args": {}, "wandb_team": None, "wandb_project": None,
              "wandb_mode": "offline", "wandb_save_model": False}
    config.update(overrides)
    return config


def test_missing_wandb_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    logger = Logger(SimpleNamespace(info=print))
    with pytest.raises(SystemExit, match=r"use_wandb=True needs the wandb package: `pip install wandb`"):
        logger.setup_wandb(wandb_config(), str(tmp_path))


def test_unknown_wandb_mode_is_refused(tmp_path):
    logger = Logger(SimpleNamespace(info=print))
    with pytest.raises(SystemExit, match="wandb_mode must be one of offline, online, got 'cloud'"):
        logger.setup_wandb(wandb_config(wandb_mode="cloud"), str(tmp_path))
    assert not os.listdir(tmp_path)
