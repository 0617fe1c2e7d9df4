"""Checkpoints: atomic save, load_step selection, kill -9 then resume, evaluate=True."""
import os
import signal
import subprocess
import sys
import time

import pytest

import torch

from helpers.harness_helpers import MAIN, REPO_ROOT, load_json, run_main, sacred_runs
from utils.checkpoint import CheckpointError, find_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def write_file(name):
    def save(path):
        with open(os.path.join(path, name), "w") as f:
            f.write("weights")
    return save


def test_save_is_atomic_and_find_picks_latest_or_closest(tmp_path):
    for t_env in (100, 250, 1000):
        path = save_checkpoint(str(tmp_path), t_env, write_file("agent.th"))
        assert path == os.path.join(str(tmp_path), str(t_env))
        assert sorted(os.listdir(path)) == ["agent.th", "checkpoint.json"]
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


TRAINED_ON_3M = {"algorithm": "qmix", "env": "smax", "map_name": "3m", "key": None, "n_agents": 3, "obs_shape": 30,
                 "state_shape": 48, "n_actions": 9, "learner": "q_learner", "mac": "basic_mac", "agent": "rnn",
                 "mixer": "qmix", "critic_type": None, "model": None}


class ListLog:
    def __init__(self):
        self.infos, self.warnings = [], []

    def info(self, message):
        self.infos.append(message)

    def warning(self, message):
        self.warnings.append(message)


def save_weights(path):
    torch.save({"w": torch.arange(1000.0)}, os.path.join(path, "agent.th"))


def load_weights(loaded):
    def load(path):
        torch.load(os.path.join(path, "agent.th"))
        loaded.append(os.path.basename(path))
    return load


def truncate(path, name="agent.th"):
    full = os.path.join(path, name)
    os.truncate(full, os.path.getsize(full) // 2)


def test_a_truncated_newest_checkpoint_is_named_and_the_newest_loadable_one_is_used(tmp_path):
    for t_env in (100, 200, 300):
        save_checkpoint(str(tmp_path), t_env, save_weights, trained_on=TRAINED_ON_3M)
    truncate(tmp_path / "300")
    assert find_checkpoint(str(tmp_path)) == (str(tmp_path / "200"), 200)  # the checkpoint.json sizes show it
    log, loaded = ListLog(), []
    assert load_checkpoint(str(tmp_path), 0, load_weights(loaded), TRAINED_ON_3M, log) == (str(tmp_path / "200"), 200)
    assert loaded == ["200"]
    (warning,) = log.warnings
    assert f"checkpoint {tmp_path / '300'} cannot be loaded (agent.th has " in warning
    assert log.infos == [f"Loading models from {tmp_path / '200'}"]


def test_checkpoints_without_checkpoint_json_load_and_fall_back_when_torch_fails(tmp_path):
    for t_env in (100, 200):  # as written before checkpoint.json existed
        save_checkpoint(str(tmp_path), t_env, save_weights)
        os.remove(tmp_path / str(t_env) / "checkpoint.json")
    truncate(tmp_path / "200")
    log, loaded = ListLog(), []
    assert load_checkpoint(str(tmp_path), 0, load_weights(loaded), TRAINED_ON_3M, log)[1] == 100
    assert loaded == ["100"]
    (warning,) = log.warnings
    assert f"checkpoint {tmp_path / '200'} cannot be loaded (RuntimeError: " in warning and "\n" not in warning

    truncate(tmp_path / "100")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(tmp_path), 0, load_weights([]), TRAINED_ON_3M, ListLog())
    message = str(info.value)
    assert message.startswith(f"no checkpoint under {str(tmp_path)!r} could be loaded: {tmp_path / '200'}: ")
    assert message.endswith("(and 1 more)") and "\n" not in message


@pytest.mark.parametrize("run_record, expected", [
    (dict(TRAINED_ON_3M, map_name="8m", n_agents=8, obs_shape=80, state_shape=168, n_actions=14),
     "trained with qmix on smax 3m (3 agents, obs 30, state 48, 9 actions); this run is qmix on smax 8m "
     "(8 agents, obs 80, state 168, 14 actions) (map_name '3m' vs '8m', n_agents 3 vs 8, obs_shape 30 vs 80, "
     "state_shape 48 vs 168, n_actions 9 vs 14)"),
    (dict(TRAINED_ON_3M, algorithm="mazero", learner="mazero_learner", mac="mazero_mac", agent="mazero",
          mixer=None, model="mazero"),
     "(learner 'q_learner' vs 'mazero_learner', mac 'basic_mac' vs 'mazero_mac', agent 'rnn' vs 'mazero', "
     "mixer 'qmix' vs None, model None vs 'mazero')"),
])
def test_a_checkpoint_for_another_map_or_algorithm_fails_in_one_line(tmp_path, run_record, expected):
    save_checkpoint(str(tmp_path), 100, save_weights, trained_on=TRAINED_ON_3M)
    loaded = []
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(tmp_path), 0, load_weights(loaded), run_record, ListLog())
    assert str(info.value).startswith(f"checkpoint {tmp_path / '100'} does not fit this run: trained with qmix")
    assert str(info.value).endswith(expected) and "\n" not in str(info.value)
    assert loaded == []  # refused before any weights are read


def test_checkpoints_of_presets_of_one_algorithm_load_into_each_other(tmp_path):
    save_checkpoint(str(tmp_path), 100, save_weights, trained_on=dict(TRAINED_ON_3M, algorithm="mazero"))
    loaded = []
    load_checkpoint(str(tmp_path), 0, load_weights(loaded), dict(TRAINED_ON_3M, algorithm="mazero_cpu"), ListLog())
    assert loaded == ["100"]


def test_load_models_points_later_lookups_at_the_checkpoint_it_loaded(tmp_path):
    from types import SimpleNamespace

    from helpers.harness_helpers import make_args
    from run.common import load_models

    for t_env in (100, 200):  # no checkpoint.json: only loading finds that 200 is damaged
        save_checkpoint(str(tmp_path), t_env, save_weights)
        os.remove(tmp_path / str(t_env) / "checkpoint.json")
    truncate(tmp_path / "200")
    args = make_args("qmix", "matrix", checkpoint_path=str(tmp_path))
    loaded, log = [], ListLog()
    assert load_models(args, SimpleNamespace(load_models=load_weights(loaded)), SimpleNamespace(console_logger=log)) \
        == 100
    # the MAZero loop then reads its run state from find_checkpoint(checkpoint_path, load_step): the same checkpoint
    assert find_checkpoint(args.checkpoint_path, args.load_step) == (str(tmp_path / "100"), 100)


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


@pytest.mark.subprocess
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
        assert sorted(os.listdir(os.path.join(checkpoint_dir, str(step)))) == ["agent.th", "checkpoint.json",
                                                                               "mixer.th", "opt.th"]

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


@pytest.mark.subprocess
def test_bad_checkpoint_path_is_a_clear_error(tmp_path):
    proc = run_main(COMMON + [f"checkpoint_path={tmp_path / 'nothing_here'}"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "is not a directory" in proc.stderr


@pytest.mark.subprocess
def test_end_to_end_damaged_newest_checkpoint_and_a_checkpoint_of_another_algorithm(tmp_path):
    run_main(COMMON + ["t_max=20", "save_model=True", "save_model_interval=10", "test_interval=1000"], tmp_path)
    (token,) = os.listdir(os.path.join(str(tmp_path), "models"))
    checkpoint_dir = os.path.join(str(tmp_path), "models", token)
    assert list_checkpoints(checkpoint_dir) == [1, 11, 21]
    truncate(os.path.join(checkpoint_dir, "21"))

    evaluated = run_main(COMMON + [f"checkpoint_path={checkpoint_dir}", "evaluate=True", "test_nepisode=2"],
                         tmp_path)
    assert f"checkpoint {os.path.join(checkpoint_dir, '21')} cannot be loaded (agent.th has " in evaluated.stderr
    assert f"Loading models from {os.path.join(checkpoint_dir, '11')}" in evaluated.stderr

    other = run_main(["--config=mappo", "--env-config=matrix", "with", "save_git_info=False",
                      f"checkpoint_path={checkpoint_dir}", "evaluate=True"], tmp_path, check=False)
    assert other.returncode == 1
    errors = [line for line in other.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [f"ERROR: checkpoint {os.path.join(checkpoint_dir, '21')} does not fit this run: trained with "
                      f"qmix on matrix (2 agents, obs 1, state 1, 3 actions); this run is mappo on matrix (2 agents, "
                      f"obs 1, state 1, 3 actions) (learner 'q_learner' vs 'ppo_learner', mac 'basic_mac' vs "
                      f"'ppo_mac', mixer 'qmix' vs None, critic_type None vs 'cv_critic')"]
    assert "size mismatch" not in other.stderr and "Traceback" not in other.stderr
