"""Shared by the MAZero run-loop tests: the matrix-game budget whose checkpoint at t_env 31 falls mid-interval for
every counter, a run through run_sequential with a Sacred stand-in, and bitwise comparisons of checkpoints."""
import dataclasses
import logging
import os

import numpy as np
import torch

from helpers.harness_helpers import make_args
from run.common import run_sequential
from run.mazero_run import MAZeroLoop
from utils.logging import Logger

# 61 one-step episodes, checkpoints at t_env 1, 31, 61 (the first is deleted: the last two are kept). Every
# counter crosses the checkpoint at 31 mid-interval: tests at t_env 1, 26, 51; runner stats at 1, 8, ..., 29, 36
# (2 episodes pending at 31); learner stats at 8, 18, 28, 38, ...; target refresh every 4 updates (a pending
# snapshot at 31); 30 updates in all (an update every other env step once 8 transitions are stored).
BUDGET = dict(runner="episode", batch_size_run=1, t_max=60, save_model=True, save_model_interval=30,
              batch_transitions=8, updates_per_env_step=0.5, num_simulations=3, sampled_actions=3,
              reanalyse_ratio=0.5, target_model_interval=4, test_interval=25, test_nepisode=2, log_interval=20,
              runner_log_interval=7, learner_log_interval=9, latent_dim=16, representation_hidden=[16],
              dynamics_hidden=[16], attention_heads=2, attention_ff_dim=16, projection_hidden=16, projection_dim=16,
              predictor_hidden=8)
CHECKPOINT_T = 31
FILES = ("agent.th", "target_agent.th", "target_snapshot.th", "opt.th", "learner_state.th", "reanalysis_queue.th",
         "replay.th", "run_state.th")
WALL_CLOCK_STATS = ("time_share_", "env_steps_per_second", "updates_per_second")
WALL_CLOCK_FIELDS = ("search_seconds",)  # of PolicyTargets


class SacredRecord:
    """Stands in for Sacred's run: the Logger appends `key` and `key_T` lists to `info`."""

    def __init__(self):
        self.info = {}

    def log_scalar(self, key, value, t):
        pass


def train(tmp_path, token, seed=7, **overrides):
    args = make_args("mazero", "matrix", seed=seed, local_results_path=str(tmp_path), **BUDGET, **overrides)
    args.unique_token = token
    logger = Logger(logging.getLogger(token))
    record = SacredRecord()
    logger.setup_sacred(record)
    run_sequential(MAZeroLoop, args, logger)
    return os.path.join(str(tmp_path), "models", token), record.info


def deterministic(key):
    return not key.startswith(WALL_CLOCK_STATS)


def assert_identical(a, b, where):
    if dataclasses.is_dataclass(a):  # the reanalysis queue's batches and policy targets
        assert type(a) is type(b), where
        fields = [field.name for field in dataclasses.fields(a) if field.name not in WALL_CLOCK_FIELDS]
        assert_identical({name: getattr(a, name) for name in fields}, {name: getattr(b, name) for name in fields},
                         where)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def assert_same_checkpoint(dir_a, dir_b, t_env):
    """Every file of the two runs' checkpoints at t_env is bitwise equal, wall-clock statistics aside."""
    for name in FILES:
        a = torch.load(os.path.join(dir_a, str(t_env), name), weights_only=False)
        b = torch.load(os.path.join(dir_b, str(t_env), name), weights_only=False)
        if name == "run_state.th":
            for state in (a, b):
                recent = state["logger"]["recent_stats"]
                state["logger"]["recent_stats"] = {key: values for key, values in recent.items() if deterministic(key)}
        assert_identical(a, b, name)
