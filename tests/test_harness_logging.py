"""Logger: Python floats into Sacred info and metrics, console summaries, TensorBoard."""
import logging
import os

import numpy as np
import torch

from utils.logging import Logger

torch.set_num_threads(1)


class FakeRun:
    def __init__(self):
        self.info = {}
        self.scalars = []

    def log_scalar(self, key, value, step):
        self.scalars.append((key, value, step))


def test_sacred_gets_python_floats_in_info_and_metrics(caplog):
    run = FakeRun()
    logger = Logger(logging.getLogger("test"))
    logger.setup_sacred(run)
    logger.log_stat("return_mean", np.float32(1.5), np.int64(10))
    logger.log_stat("loss", torch.tensor(0.25), 20)
    logger.log_stat("test_battle_won_mean", True, 30)
    logger.log_stat("private", 1.0, 30, to_sacred=False)
    assert run.info == {"return_mean": [1.5], "return_mean_T": [10], "loss": [0.25], "loss_T": [20],
                        "test_battle_won_mean": [1.0], "test_battle_won_mean_T": [30]}
    assert all(type(v) is float and type(t) is int for _, v, t in run.scalars)
    assert [k for k, _, _ in run.scalars] == ["return_mean", "loss", "test_battle_won_mean"]

    for t in range(7):
        logger.log_stat("epsilon", 1.0 - 0.1 * t, 40 + t)
    logger.log_stat("episode", 12, 46)
    with caplog.at_level(logging.INFO):
        logger.print_recent_stats()
    assert "t_env:         46 | Episode:       12" in caplog.text
    assert "epsilon:                   0.4000" in caplog.text  # epsilon: the last value, not a mean


def test_tensorboard_writes_event_files(tmp_path):
    logger = Logger(logging.getLogger("test"))
    logger.setup_tb(str(tmp_path))
    logger.log_stat("return_mean", 2.0, 5)
    logger.finish()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))


def test_console_prints_the_latest_value_of_stats_logged_since_the_last_summary(caplog):
    logger = Logger(logging.getLogger("test"))
    logger.log_stat("updates", 203, 1000)
    logger.log_stat("loss", 0.5, 1000)
    logger.log_stat("updates", 406, 2000)  # a counter: its latest value, never a mean of counts
    logger.log_stat("loss", 0.25, 2000)
    for t, ret in ((1500, 1.0), (2000, 3.0)):
        logger.log_stat("return_mean", ret, t)
    logger.log_stat("episode", 40, 2000)
    with caplog.at_level(logging.INFO):
        logger.print_recent_stats()
    first = caplog.text
    assert "updates:                 406.0000" in first and "loss:                      0.2500" in first
    assert "return_mean:               3.0000" in first  # the latest window's mean, not a mean of means

    caplog.clear()
    logger.log_stat("return_mean", 5.0, 3000)  # the learner did not log between the two summaries
    logger.log_stat("episode", 60, 3000)
    with caplog.at_level(logging.INFO):
        logger.print_recent_stats()
    second = caplog.text
    assert "t_env:       3000 | Episode:       60" in second and "return_mean:               5.0000" in second
    assert "loss" not in second and "updates" not in second  # stale learner values are not repeated
