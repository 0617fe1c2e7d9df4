"""Stopping runs: SIGTERM (SLURM, docker stop, timeout) stops a run as Ctrl-C does, with one line, its env workers
stopped quietly and its record INTERRUPTED, even when it was started with SIGINT ignored (`nohup ... &` from a
script); the sweep stops its runs on SIGTERM however it was started, and a run whose sweep was killed keeps the
run's folder locked, so a restarted sweep never runs it a second time."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from helpers.harness_helpers import MAIN, REPO_ROOT

pytestmark = pytest.mark.subprocess

SWEEP = os.path.join(REPO_ROOT, "src", "sweep")
LONG = ["t_max=10000000", "test_interval=200", "log_interval=200", "runner_log_interval=200",
        "learner_log_interval=200", "test_nepisode=8", "save_git_info=False"]


def ignore_sigint():
    """What a non-interactive shell does to a command started with `&`: SIGINT ignored, inherited by children."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def wait_for(condition, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def read_status(pattern):
    statuses = []
    for path in glob.glob(pattern):
        try:
            with open(path) as f:
                statuses.append(json.load(f)["status"])
        except (OSError, ValueError, KeyError):
            statuses.append(None)
    return statuses


def training(tmp_path):
    """The run has logged its first console summary (its env workers are up and it is in the training loop)."""
    log = tmp_path / "stderr.txt"
    return log.exists() and "Recent Stats" in log.read_text()


@pytest.mark.parametrize("how", ["SIGTERM to the run", "Ctrl-C to its process group"])
def test_a_stopped_run_prints_one_line_and_records_interrupted(tmp_path, how):
    # MAPPO on the matrix game runs its 8 envs in spawn worker processes
    command = [sys.executable, MAIN, "--config=mappo", "--env-config=matrix", "with",
               f"local_results_path={tmp_path}"] + LONG
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        run = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err, start_new_session=True,
                               preexec_fn=ignore_sigint)
        try:
            wait_for(lambda: training(tmp_path), 180, "the run to train")
            if how == "SIGTERM to the run":
                run.send_signal(signal.SIGTERM)
            else:  # a terminal's Ctrl-C reaches every process of the foreground group, workers included
                os.killpg(run.pid, signal.SIGINT)
            assert run.wait(timeout=60) == 130
        finally:
            if run.poll() is None:
                run.kill()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr[-3000:]
    assert stderr.count("INTERRUPTED: the run stopped on Ctrl-C / SIGTERM") == 1
    assert read_status(os.path.join(str(tmp_path), "sacred", "mappo", "matrix", "*", "run.json")) == ["INTERRUPTED"]
    assert "tee_stdout.wait timeout" not in stderr


def write_grid(tmp_path):
    grid = {"configs": ["qmix"], "env_configs": ["matrix"], "seeds": [1],
            "with": {"t_max": 10000000, "test_interval": 200, "log_interval": 200, "test_nepisode": 2,
                     "save_git_info": False}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return str(path)


def test_sigterm_to_a_backgrounded_sweep_interrupts_its_runs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, SWEEP, write_grid(tmp_path), "--dir", str(sweep_dir)]
    sweep = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=ignore_sigint)
    records = os.path.join(str(sweep_dir), "qmix_matrix_seed1", "sacred", "*", "*", "*", "run.json")
    try:
        wait_for(lambda: read_status(records) == ["RUNNING"], 180, "the sweep's run to start")
        sweep.send_signal(signal.SIGTERM)
        out = sweep.communicate(timeout=120)[0]
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130, out
    assert "interrupted qmix_matrix_seed1" in out and "1 runs: 1 interrupted" in out
    assert read_status(records) == ["INTERRUPTED"]


def test_a_run_outliving_its_killed_sweep_keeps_its_folder_locked(tmp_path):
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, SWEEP, write_grid(tmp_path), "--dir", str(sweep_dir)]
    records = os.path.join(str(sweep_dir), "qmix_matrix_seed1", "sacred", "*", "*", "*", "run.json")
    first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = sweep_dir / "qmix_matrix_seed1" / ".sweep.lock"
    orphan = None
    try:
        wait_for(lambda: read_status(records) == ["RUNNING"], 180, "the sweep's run to start")
        holder = lock.read_text()
        assert f"sweep pid {first.pid}, run pid " in holder
        orphan = int(holder.split("run pid ")[1])
        first.kill()  # SIGKILL: the sweep cannot stop its run, which goes on in its own session
        first.wait(timeout=30)
        os.kill(orphan, 0)  # still alive
        second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"skipped     qmix_matrix_seed1: still running (sweep pid {first.pid}, run pid {orphan})" \
            in second.stdout
        assert read_status(records) == ["RUNNING"]  # no second record in the folder
    finally:
        if first.poll() is None:
            first.kill()
        if orphan is not None:
            try:
                os.kill(orphan, signal.SIGTERM)
            except ProcessLookupError:
                pass
    wait_for(lambda: read_status(records) == ["INTERRUPTED"], 60, "the orphan run to stop")
