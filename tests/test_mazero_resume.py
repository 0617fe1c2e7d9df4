"""Exact resume: N updates straight equal N/2 + checkpoint + rebuild + load + N/2, bitwise (matrix game, CPU)."""
import os
import random

import numpy as np
import pytest
import torch

from helpers.mazero_run_helpers import CHECKPOINT_T, assert_same_checkpoint, deterministic, train
from utils.checkpoint import list_checkpoints

torch.set_num_threads(1)


@pytest.mark.heavy
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
    assert_same_checkpoint(straight_dir, resumed_dir, 61)

    # The resumed Sacred record continues the straight one's series after the checkpoint, value for value.
    logged = [key for key in straight_info if f"{key}_T" in straight_info and deterministic(key)]
    assert {"loss", "return_mean", "test_return_mean", "updates", "episode"} <= set(logged)
    for key in logged:
        tail = [(t, v) for t, v in zip(straight_info[f"{key}_T"], straight_info[key]) if t > CHECKPOINT_T]
        assert list(zip(resumed_info.get(f"{key}_T", []), resumed_info.get(key, []))) == tail, key
