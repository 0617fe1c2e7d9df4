"""Killed and resumed by hand: every metric logged up to a checkpoint is on disk before the checkpoint exists, the
resumed run names the run it continues, and the results tool joins the attempts into one record."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.harness_helpers import MAIN, REPO_ROOT, load_json, run_main, sacred_runs
from tools.results.cli import main as results_main

pytestmark = pytest.mark.subprocess

# test, log and checkpoint every 40 env steps (the same cycles); a long Sacred heartbeat, so only the flush before
# each checkpoint can have written the record
COMMON = ["--config=qmix", "--env-config=matrix", "--beat-interval=3600", "with", "save_model=True",
          "save_model_interval=40", "test_interval=40", "log_interval=40", "runner_log_interval=40",
          "learner_log_interval=40", "test_nepisode=2", "save_git_info=False", "batch_size=8", "buffer_size=64"]


def checkpoints(tmp_path):
    return sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(str(tmp_path), "models", "*", "[0-9]*")))


def test_kill_9_and_resume_form_one_record_with_every_metric(tmp_path, capsys):
    command = [sys.executable, MAIN] + COMMON + ["t_max=100000000", f"local_results_path={tmp_path}"]
    killed = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while len(checkpoints(tmp_path)) < 3 and time.time() < deadline:
            time.sleep(0.2)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    saved = checkpoints(tmp_path)
    assert len(saved) >= 3, "no checkpoints within 3 minutes"
    first = sacred_runs(tmp_path, "qmix", "matrix")[0]
    assert load_json(first, "run.json")["status"] == "RUNNING"  # SIGKILL: Sacred never noticed
    # the evaluation of every checkpoint's t_env reached the record before the checkpoint was written
    tested = load_json(first, "metrics.json")["test_return_mean"]["steps"]
    assert set(saved) <= set(tested), (saved, tested)
    assert load_json(first, "info.json")["record_complete_to"] >= saved[-1]  # what the sweep resumes from

    token = glob.glob(os.path.join(str(tmp_path), "models", "*"))[0]
    resumed_at = saved[-1]
    run_main(COMMON[:2] + COMMON[3:] + [f"checkpoint_path={token}", f"t_max={resumed_at + 80}"], tmp_path)
    second = sacred_runs(tmp_path, "qmix", "matrix")[-1]
    assert load_json(second, "info.json")["resumed_from"] == {
        "unique_token": os.path.basename(token), "checkpoint_path": token, "t_env": resumed_at}
    assert load_json(first, "info.json")["unique_token"] == os.path.basename(token)

    root = os.path.join(str(tmp_path), "sacred")
    assert results_main(["list", "--root", root, "--format", "json"]) == 0
    out = capsys.readouterr()
    listed = json.loads(out.out)[0]["rows"]
    assert len(listed) == 1 and listed[0]["status"] == "COMPLETED"
    first_id, second_id = (os.path.relpath(run, root).replace(os.sep, "/") for run in (first, second))
    assert listed[0]["id"] == second_id
    assert listed[0]["seed"] == load_json(first, "config.json")["seed"]  # the resume drew a seed of its own
    assert f"resumed run: {first_id} to t_env {resumed_at}, then {second_id}" in json.dumps(listed[0]["notes"])
    assert f"reading {root}" in out.err
    # one curve: the first attempt's evaluations up to the checkpoint, then the resumed run's
    assert results_main(["compare", "--root", root, "--threshold", "-1000", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)[0]["rows"]
    assert row["reached"] == 1 and row["steps_to_threshold"] == 1.0  # the first attempt's first evaluation
