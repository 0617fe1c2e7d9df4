"""Checkpoints are safe to open and to write: every file loads with torch.load(weights_only=True) (a planted pickle
is refused by name and runs nothing, also under evaluate=True), and a full disk says "disk full", names the path
and leaves a valid FAILED Sacred record."""
import errno
import glob
import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from helpers.harness_helpers import MAIN, REPO_ROOT, load_json, run_main, sacred_runs
from utils.checkpoint import DiskFullError, UnsafeCheckpointError, load_state, save_checkpoint

DiskUsage = namedtuple("DiskUsage", "total used free")  # shutil.disk_usage's result
TINY = ["t_max=20", "test_interval=10", "log_interval=10", "test_nepisode=2", "save_git_info=False"]


class Planted:
    """What a shared checkpoint could hold: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@dataclass
class Targets:
    values: torch.Tensor


def test_load_state_reads_tensors_numpy_arrays_and_allowed_types(tmp_path):
    path = str(tmp_path / "state.th")
    state = {"rng": np.random.RandomState(3).get_state(), "priorities": np.arange(4, dtype=np.float32),
             "mask": np.ones(2, dtype=bool), "weights": torch.ones(2), "counters": {"t_env": 5}}
    torch.save(state, path)
    loaded = load_state(path)
    assert loaded["rng"][0] == "MT19937" and np.array_equal(loaded["rng"][1], state["rng"][1])
    assert loaded["priorities"].dtype == np.float32 and loaded["mask"].dtype == bool
    torch.save({"queue": [Targets(torch.zeros(3))]}, path)
    with pytest.raises(UnsafeCheckpointError, match="Targets"):
        load_state(path)
    assert torch.equal(load_state(path, allowed=(Targets,))["queue"][0].values, torch.zeros(3))


def test_a_planted_pickle_is_refused_by_name_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "run_state.th")
    torch.save({"counters": Planted(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=rf"refusing to load {path}: .*system"):
        load_state(path)
    assert not marker.exists()


def test_no_source_file_loads_with_weights_only_false():
    sources = glob.glob(os.path.join(REPO_ROOT, "src", "**", "*.py"), recursive=True)
    offenders = [path for path in sources if "weights_only=False" in open(path).read()]
    assert offenders == []


def plant(checkpoint, name, marker):
    """Replaces checkpoint/name by a pickle that runs `touch marker`, and fixes checkpoint.json's sizes (the
    manifest is no protection: whoever shares a checkpoint writes it too)."""
    torch.save(Planted(marker), os.path.join(checkpoint, name))
    with open(os.path.join(checkpoint, "checkpoint.json")) as f:
        manifest = json.load(f)
    manifest["files"][name] = os.path.getsize(os.path.join(checkpoint, name))
    with open(os.path.join(checkpoint, "checkpoint.json"), "w") as f:
        json.dump(manifest, f)


@pytest.fixture(scope="module")
def qmix_checkpoints(tmp_path_factory):
    """The checkpoint folder (results/models/<unique_token>) of a short QMIX run."""
    results = tmp_path_factory.mktemp("trained")
    run_main(["--config=qmix", "--env-config=matrix", "with", "save_model=True", "save_model_interval=10"] + TINY,
             results)
    return glob.glob(os.path.join(str(results), "models", "*"))[0]


@pytest.mark.subprocess
@pytest.mark.parametrize("name", ["mixer.th", "agent.th"])
def test_evaluating_a_planted_checkpoint_stops_with_one_line_and_runs_nothing(tmp_path, qmix_checkpoints, name):
    token = str(tmp_path / "models" / os.path.basename(qmix_checkpoints))
    shutil.copytree(qmix_checkpoints, token)
    checkpoints = sorted(glob.glob(os.path.join(token, "[0-9]*")), key=lambda p: int(os.path.basename(p)))
    marker = tmp_path / "pwned"
    plant(checkpoints[-1], name, marker)
    proc = run_main(["--config=qmix", "--env-config=matrix", "with", f"checkpoint_path={token}", "evaluate=True"]
                    + TINY, tmp_path, check=False)
    assert proc.returncode == 1
    refusals = [line for line in proc.stderr.splitlines() if line.startswith("ERROR: refusing to load ")]
    assert len(refusals) == 1 and checkpoints[-1] in refusals[0] and "posix.system" in refusals[0], proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()
    assert load_json(sacred_runs(tmp_path, "qmix", "matrix")[-1], "run.json")["status"] == "FAILED"


def test_disk_full_while_saving_names_the_path_and_leaves_nothing_behind(tmp_path, monkeypatch):
    def no_space(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=rf"^disk full: cannot write checkpoint {tmp_path}/7 "):
        save_checkpoint(str(tmp_path), 7, no_space)
    assert os.listdir(tmp_path) == []

    # torch's zip writer reports a full disk as "unexpected pos ...": the free space decides
    def torch_error(path):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1024128 vs 1024016")

    monkeypatch.setattr("shutil.disk_usage", lambda path: DiskUsage(10 ** 9, 10 ** 9, 0))
    with pytest.raises(DiskFullError, match="unexpected pos"):
        save_checkpoint(str(tmp_path), 8, torch_error)
    monkeypatch.setattr("shutil.disk_usage", lambda path: DiskUsage(10 ** 9, 0, 10 ** 9))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint(str(tmp_path), 9, torch_error)


@pytest.mark.subprocess
def test_a_run_whose_disk_fills_ends_failed_with_a_valid_record(tmp_path):
    # torch.save raises ENOSPC from the second checkpoint on, as on a file system that just filled up
    code = ("import errno, runpy, sys, torch\n"
            "sys.path.insert(0, 'src')\n"
            "calls = []\n"
            "save = torch.save\n"
            "def full(obj, path, *args, **kwargs):\n"
            "    calls.append(path)\n"
            "    if len(calls) > 3:\n"
            "        raise OSError(errno.ENOSPC, 'No space left on device', path)\n"
            "    return save(obj, path, *args, **kwargs)\n"
            "torch.save = full\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    command = [sys.executable, "-c", code, MAIN, "--config=qmix", "--env-config=matrix", "with", "save_model=True",
               "save_model_interval=10", f"local_results_path={tmp_path}"] + TINY
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and errors[0].startswith("ERROR: disk full: cannot write checkpoint ")
    assert str(tmp_path) in errors[0] and "Traceback" not in proc.stderr
    run_dir = sacred_runs(tmp_path, "qmix", "matrix")[-1]
    assert load_json(run_dir, "run.json")["status"] == "FAILED"
    assert load_json(run_dir, "metrics.json")["test_return_mean"]["steps"][0] == 1
    assert not glob.glob(os.path.join(str(tmp_path), "models", "*", ".tmp-*"))
