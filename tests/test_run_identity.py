"""Run identity: unique tokens for runs started together, and the trained_on record of checkpoints."""
import datetime
import os
import subprocess
import sys

import pytest

from helpers.harness_helpers import MAIN, REPO_ROOT, load_json, make_args, sacred_runs
from utils.checkpoint import find_checkpoint, list_checkpoints, read_manifest
from utils.run_identity import mismatch, trained_on, unique_token


def test_runs_started_in_the_same_second_with_the_same_seed_get_different_tokens():
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    tokens = {unique_token("mazero_cpu", 11, "3m", now) for _ in range(100)}
    assert len(tokens) == 100
    assert all(token.startswith("mazero_cpu_seed11_3m_2026-01-02_03-04-05_") for token in tokens)


def test_trained_on_names_the_env_the_shapes_and_the_networks():
    args = make_args("qmix", "smax", seed=1)
    args.n_agents, args.obs_shape, args.state_shape, args.n_actions = 3, 30, (48,), 9
    record = trained_on(args)
    assert record == {"algorithm": "qmix", "env": "smax", "map_name": "3m", "key": None, "n_agents": 3,
                      "obs_shape": 30, "state_shape": [48], "n_actions": 9, "learner": "q_learner",
                      "mac": "basic_mac", "agent": "rnn", "mixer": "qmix", "critic_type": None, "model": None}
    assert mismatch(record, dict(record)) is None


@pytest.mark.subprocess
def test_four_concurrent_runs_with_one_seed_keep_four_records_and_checkpoint_folders(tmp_path):
    cmd = [sys.executable, MAIN, "--config=qmix", "--env-config=matrix", "with", "save_git_info=False", "seed=11",
           "batch_size=4", "t_max=12", "save_model=True", "save_model_interval=4", "test_interval=1000",
           "test_nepisode=1", f"local_results_path={tmp_path}"]
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    runs = sacred_runs(tmp_path, "qmix", "matrix")
    assert len(runs) == 4 and all(load_json(run, "run.json")["status"] == "COMPLETED" for run in runs)
    models_root = os.path.join(str(tmp_path), "models")
    tokens = sorted(os.listdir(models_root))
    assert len(tokens) == 4
    assert sorted(load_json(run, "config.json")["seed"] for run in runs) == [11] * 4
    for token in tokens:  # each folder holds one run's complete series: none deleted or overwritten another's
        folder = os.path.join(models_root, token)
        assert list_checkpoints(folder) == [1, 5, 9, 13]
        assert find_checkpoint(folder) == (os.path.join(folder, "13"), 13)
        assert read_manifest(os.path.join(folder, "13"))["trained_on"]["algorithm"] == "qmix"
