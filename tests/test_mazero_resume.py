"""Exact resume: N updates straight equal N/2 + checkpoint + rebuild + load + N/2, bitwise (matrix game, CPU)."""
import logging
import os
import random

import numpy as np
import pytest
import torch

from harness_helpers import make_args
from run.common import run_sequential
from run.mazero_run import MAZeroLoop
from utils.checkpoint import list_checkpoints
from utils.logging import Logger

torch.set_num_threads(1)

# 61 one-step episodes, checkpoints at t_env 1, 31, 61 (the first is deleted: the last two are kept). Every
# counter crosses the checkpoint at 31 mid-interval: tests at t_env 1, 26, 51; runner stats at 1, 8, ..., 29, 36
# (2 episodes pending at 31); learner stats at 8, 18, 28, 38, ...; target refresh every 4 updates (a pending
# snapshot at 31); 30 updates in all (an update every other env step once 8 transitions are stored).
BUDGET = dict(runner="episode", batch_size_run=1, t_max=60, save_model=True, save_model_interval=30,
              batch_size=8, updates_per_env_step=0.5, num_simulations=3, sampled_actions=3, reanalyse_ratio=0.5,
              target_model_interval=4, test_interval=25, test_nepisode=2, log_interval=20, runner_log_interval=7,
              learner_log_interval=9, latent_dim=16, representation_hidden=[16], dynamics_hidden=[16],
              attention_heads=2, attention_ff_dim=16, projection_hidden=16, projection_dim=16, predictor_hidden=8)
CHECKPOINT_T = 31
FILES = ("agent.th", "target_agent.th", "target_snapshot.th", "opt.th", "learner_state.th", "replay.th",
         "run_state.th")
WALL_CLOCK_STATS = ("time_share_", "env_steps_per_second", "updates_per_second")


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
    if isinstance(a, torch.Tensor):
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


@pytest.fixture
def deterministic_torch():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def test_resumed_run_equals_straight_run_bitwise(tmp_path, deterministic_torch):
    straight_dir, straight_info = train(tmp_path, "straight")
    assert list_checkpoints(straight_dir) == [CHECKPOINT_T, 61]  # t_env 1 deleted once two newer ones existed

    # A fresh process would start from other global RNG states, and a resume without `seed=` draws a new seed:
    # only the checkpoint may set the random streams.
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)
    resumed_dir, resumed_info = train(tmp_path, "resumed", seed=8, checkpoint_path=straight_dir,
                                      load_step=CHECKPOINT_T)
    assert list_checkpoints(resumed_dir) == [61]

    updates = [torch.load(os.path.join(straight_dir, str(t), "learner_state.th"))["update_count"]
               for t in (CHECKPOINT_T, 61)]
    assert updates == [15, 30]  # N = 30 updates, N/2 of them after the checkpoint
    for name in FILES:
        a = torch.load(os.path.join(straight_dir, "61", name), weights_only=False)
        b = torch.load(os.path.join(resumed_dir, "61", name), weights_only=False)
        if name == "run_state.th":
            for stats in (a, b):
                recent = stats["logger"]["recent_stats"]
                stats["logger"]["recent_stats"] = {k: v for k, v in recent.items() if deterministic(k)}
        assert_identical(a, b, name)

    # The resumed Sacred record continues the straight one's series after the checkpoint, value for value.
    logged = [key for key in straight_info if not key.endswith("_T") and deterministic(key)]
    assert {"loss", "return_mean", "test_return_mean", "updates", "episode"} <= set(logged)
    for key in logged:
        tail = [(t, v) for t, v in zip(straight_info[f"{key}_T"], straight_info[key]) if t > CHECKPOINT_T]
        assert list(zip(resumed_info.get(f"{key}_T", []), resumed_info.get(key, []))) == tail, key


def test_a_run_state_written_before_the_objects_owned_their_state_is_upgraded():
    from run.mazero_run import upgrade_run_state

    old = {"counters": {"episode": 3, "last_test_T": 1, "last_log_T": 2, "model_save_time": 31},
           "runner": {"t_env": 31}, "learner_log_stats_t": 28, "learner_search": {"seed": 8},
           "mac_rng": {"state": 1}, "mac_search": {"seed": 7}, "logger_recent_stats": {"loss": [(28, 0.5)]},
           "python_rng": 1, "numpy_rng": 2, "torch_rng": 3}
    new = upgrade_run_state(old)
    assert new["counters"] == {"episode": 3, "last_test_T": 1, "last_log_T": 2, "last_save_T": 31}
    assert new["mac"] == {"rng": {"state": 1}, "search": {"seed": 7}}
    assert new["learner"] == {"log_stats_t": 28}
    assert new["logger"] == {"recent_stats": {"loss": [(28, 0.5)]}}
    assert upgrade_run_state(new) == new
