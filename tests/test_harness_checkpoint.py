"""Checkpoints: atomic save, load_step selection, kill -9 then resume, evaluate=True."""
import os
import signal
import subprocess
import sys
import time

import pytest

from harness_helpers import MAIN, REPO_ROOT, load_json, run_main, sacred_runs
from utils.checkpoint import find_checkpoint, list_checkpoints, save_checkpoint


def write_file(name):
    def save(path):
        with open(os.path.join(path, name), "w") as f:
            f.write("weights")
    return save


def test_save_is_atomic_and_find_picks_latest_or_closest(tmp_path):
    for t_env in (100, 250, 1000):
        path = save_checkpoint(str(tmp_path), t_env, write_file("agent.th"))
        assert path == os.path.join(str(tmp_path), str(t_env))
        assert os.listdir(path) == ["agent.th"]
    os.makedirs(tmp_path / ".tmp-2000-abc")  # leftover of a killed save
    assert list_checkpoints(str(tmp_path)) == [100, 250, 1000]
    assert find_checkpoint(str(tmp_path), 0) == (os.path.join(str(tmp_path), "1000"), 1000)
    assert find_checkpoint(str(tmp_path), 300)[1] == 250
    assert find_checkpoint(str(tmp_path), 900)[1] == 1000


def test_keep_deletes_older_checkpoints_after_the_new_one_is_in_place(tmp_path):
    seen = []

    def save(path):
        seen.append(list_checkpoints(str(tmp_path)))  # what exists while the new checkpoint is written
        write_file("agent.th")(path)

    for t_env in (100, 200, 300, 400):
        save_checkpoint(str(tmp_path), t_env, save, keep=2)
    assert seen == [[], [100], [100, 200], [200, 300]]
    assert sorted(os.listdir(tmp_path)) == ["300", "400"]  # no hidden leftovers either


def test_failed_save_leaves_nothing_behind(tmp_path):
    def crash(path):
        write_file("agent.th")(path)
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_checkpoint(str(tmp_path), 500, crash)
    assert os.listdir(tmp_path) == []


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        find_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        find_checkpoint(str(tmp_path))


COMMON = ["--config=qmix", "--env-config=matrix", "with", "save_git_info=False", "batch_size=8", "seed=5",
          "log_interval=100000", "runner_log_interval=100", "learner_log_interval=100000"]


def wait_for_checkpoints(models_root, count, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training run ended early:\n{proc.stderr.read()[-3000:]}")
        tokens = os.listdir(models_root) if os.path.isdir(models_root) else []
        if tokens and len(list_checkpoints(os.path.join(models_root, tokens[0]))) >= count:
            return os.path.join(models_root, tokens[0])
        time.sleep(0.2)
    raise AssertionError("no checkpoints appeared")


def test_killed_run_resumes_from_its_last_checkpoint_and_evaluates(tmp_path):
    models_root = os.path.join(str(tmp_path), "models")
    cmd = [sys.executable, MAIN] + COMMON + ["t_max=1000000", "save_model=True", "save_model_interval=200",
                                             "test_interval=1000000", f"local_results_path={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        checkpoint_dir = wait_for_checkpoints(models_root, 3, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    steps = list_checkpoints(checkpoint_dir)
    last = steps[-1]
    for step in steps:  # every complete checkpoint holds the learner's files
        assert sorted(os.listdir(os.path.join(checkpoint_dir, str(step)))) == ["agent.th", "mixer.th", "opt.th"]

    resumed = run_main(COMMON + [f"checkpoint_path={checkpoint_dir}", f"t_max={last + 300}",
                                 "test_interval=100"], tmp_path)
    assert f"Loading models from {os.path.join(checkpoint_dir, str(last))}" in resumed.stderr
    run_dirs = sacred_runs(tmp_path, "qmix", "matrix")
    assert len(run_dirs) == 2
    assert load_json(run_dirs[0], "run.json")["status"] == "RUNNING"  # kill -9: Sacred never saw the end
    metrics = load_json(run_dirs[-1], "metrics.json")
    assert load_json(run_dirs[-1], "run.json")["status"] == "COMPLETED"
    # t_env continues from the checkpoint: the first episode after loading is step last + 1
    assert metrics["return_mean"]["steps"][0] == last + 1
    assert metrics["test_return_mean"]["steps"][0] == last + 1

    evaluated = run_main(COMMON + [f"checkpoint_path={checkpoint_dir}", "evaluate=True", f"load_step={steps[0]}",
                                   "test_nepisode=6"], tmp_path)
    assert f"Loading models from {os.path.join(checkpoint_dir, str(steps[0]))}" in evaluated.stderr
    eval_dir = sacred_runs(tmp_path, "qmix", "matrix")[-1]
    assert load_json(eval_dir, "run.json")["status"] == "COMPLETED"
    eval_metrics = load_json(eval_dir, "metrics.json")
    assert eval_metrics["test_return_mean"]["steps"] == [steps[0]]
    assert "loss" not in eval_metrics and "return_mean" not in eval_metrics


def test_bad_checkpoint_path_is_a_clear_error(tmp_path):
    proc = run_main(COMMON + [f"checkpoint_path={tmp_path / 'nothing_here'}"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "is not a directory" in proc.stderr
