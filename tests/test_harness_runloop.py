"""The run-loop skeleton (run.common.train_sequential): every run ends with a test, a log and a checkpoint at its
last t_env, whatever the intervals, and a run resumed from that final checkpoint repeats none of them."""
import logging
import os
from types import SimpleNamespace

import pytest

from helpers.harness_helpers import load_json, run_main, sacred_runs
from run.common import LoopCounters, train_sequential
from utils.checkpoint import list_checkpoints
from utils.logging import Logger


@pytest.mark.subprocess
def test_default_loop_ends_with_a_test_and_a_checkpoint_at_the_last_t_env(tmp_path):
    # one-step matrix episodes: t_env 1, 2, ..., 51 (the loop runs while t_env <= t_max); tests at 1 and 31
    run_main(["--config=qmix", "--env-config=matrix", "with", "t_max=50", "test_interval=30", "test_nepisode=2",
              "batch_size=8", "buffer_size=64", "log_interval=30", "runner_log_interval=30",
              "learner_log_interval=30", "save_model=True", "save_model_interval=30"], tmp_path)
    (run_dir,) = sacred_runs(tmp_path, "qmix", "matrix")
    metrics = load_json(run_dir, "metrics.json")
    assert metrics["test_return_mean"]["steps"] == [1, 31, 51]
    assert metrics["episode"]["steps"][-1] == 51
    (token,) = os.listdir(os.path.join(str(tmp_path), "models"))
    assert list_checkpoints(os.path.join(str(tmp_path), "models", token)) == [1, 31, 51]


class StepRunner:
    """One transition per collect, like a one-step matrix game."""

    def __init__(self, t_env=0):
        self.t_env = t_env


class RecordingLoop:
    """Records which steps the skeleton calls, at which t_env."""

    def __init__(self, runner):
        self.runner, self.calls = runner, []

    def start(self):
        pass

    def collect(self):
        self.runner.t_env += 1

    def train(self, episode):
        pass

    def test(self):
        self.calls.append(("test", self.runner.t_env))

    def log(self, t_env):
        self.calls.append(("log", t_env))

    def save(self, counters):
        self.calls.append(("save", self.runner.t_env, counters.last_test_T, counters.last_log_T))


def run_skeleton(t_env, counters, **intervals):
    args = SimpleNamespace(t_max=10, batch_size_run=1, save_model=True, **intervals)
    runner = StepRunner(t_env)
    loop = RecordingLoop(runner)
    train_sequential(args, Logger(logging.getLogger("runloop")), runner, loop, counters)
    return loop.calls


def test_the_final_checkpoint_holds_the_final_test_and_a_resume_from_it_repeats_nothing():
    counters = LoopCounters(episode=0, last_test_T=-5, last_log_T=0, last_save_T=0)
    calls = run_skeleton(0, counters, test_interval=4, log_interval=4, save_model_interval=4)
    assert [c[1] for c in calls if c[0] == "test"] == [1, 5, 9, 11]
    assert [c[1] for c in calls if c[0] == "log"] == [4, 8, 11]
    assert [c[1:] for c in calls if c[0] == "save"][-1] == (11, 11, 11)  # taken after the final test and log
    assert run_skeleton(11, counters, test_interval=4, log_interval=4, save_model_interval=4) == []


def test_nothing_is_repeated_when_the_last_cycle_ended_on_every_interval():
    counters = LoopCounters(episode=0, last_test_T=-2, last_log_T=0, last_save_T=0)
    calls = run_skeleton(0, counters, test_interval=1, log_interval=1, save_model_interval=1)
    assert calls[-3:] == [("test", 11), ("log", 11), ("save", 11, 11, 11)]
    assert sum(1 for c in calls if c[1] == 11) == 3
