"""Reanalysis on Ray workers (learners/mazero_reanalyse.py): the same targets as in process, batch for batch; a
killed worker is restarted and its batches recomputed; exact resume with workers; clear errors.

One local two-CPU Ray serves the whole module (its start-up takes most of this file's time)."""
import os
import random
import signal
import sys

import numpy as np
import pytest
import torch

from helpers.harness_helpers import run_main
from learners.mazero_feed import TrainingFeed
from learners.mazero_reanalyse import ReanalysisPool
from helpers.mazero_args import mazero_args
from helpers.mazero_learner_helpers import reanalysis_config
from helpers.mazero_run_helpers import CHECKPOINT_T, assert_same_checkpoint, train

KILL_AT_UPDATE = 20  # after the checkpoint at update 15, so the resumed run (no kill) must match the killed one


@pytest.fixture
def recorded_updates(monkeypatch):
    """Records (rows, policy targets) of every update of every run, keyed by reanalyse_workers; kills a worker's
    process before update KILL_AT_UPDATE of a run with workers when `kill` is set."""
    record = {"kill": False, "feeds": []}
    original = TrainingFeed.next

    def next_batch(self):
        workers = self.config.reanalyse_workers
        if workers and record["kill"] and self.learner.update_count == KILL_AT_UPDATE:
            os.kill(self.reanalysis.worker_pids()[0], signal.SIGKILL)
        if self not in record["feeds"]:
            record["feeds"].append(self)
        batch, policy = original(self)
        record.setdefault(workers, []).append((batch.rows.clone(), policy))
        return batch, policy

    monkeypatch.setattr(TrainingFeed, "next", next_batch)
    return record


def train_from_seed(tmp_path, token, **overrides):
    """`train` after seeding the global RNGs as main.py does, so that two fresh runs start alike."""
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    return train(tmp_path, token, seed=7, **overrides)


def assert_same_targets(a, b):
    assert len(a) == len(b) > 0
    for (rows_a, policy_a), (rows_b, policy_b) in zip(a, b):
        assert torch.equal(rows_a, rows_b)
        for name in ("joint_actions", "omega", "advantages", "coef", "mask", "awpo_weights"):
            assert torch.equal(getattr(policy_a, name), getattr(policy_b, name)), name


@pytest.mark.subprocess
def test_workers_give_in_process_targets_survive_a_kill_and_resume_bitwise(tmp_path, local_ray, recorded_updates,
                                                                           deterministic_torch):
    in_process_dir, _ = train_from_seed(tmp_path, "in_process")
    recorded_updates["kill"] = True
    workers_dir, _ = train_from_seed(tmp_path, "workers", reanalyse_workers=2)
    # identical targets batch for batch, so identical runs; the killed worker was restarted once and the run ended
    assert_same_targets(recorded_updates[0], recorded_updates[2])
    assert recorded_updates["feeds"][1].reanalysis.restarts == 1
    assert_same_checkpoint(in_process_dir, workers_dir, 61)

    # resume from the checkpoint taken with two batches in flight, with workers, and without the kill
    recorded_updates["kill"] = False
    resumed_dir, _ = train(tmp_path, "resumed", seed=8, checkpoint_path=workers_dir, load_step=CHECKPOINT_T,
                           reanalyse_workers=2)
    queued = torch.load(os.path.join(workers_dir, str(CHECKPOINT_T), "reanalysis_queue.th"), weights_only=False)
    assert len(queued["pending"]) == 2  # reanalyse_prefetch
    assert_same_checkpoint(workers_dir, resumed_dir, 61)


@pytest.mark.subprocess
def test_more_workers_than_cpus_is_a_clear_error(local_ray):
    with pytest.raises(SystemExit, match=r"reanalyse_workers=3 x reanalyse_num_cpus=1 needs 3 CPUs, the Ray "
                                         r"cluster has 2"):
        ReanalysisPool(reanalysis_config(mazero_args(reanalyse_workers=3)), None, None, None)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit, match=r"reanalyse_workers=2 needs Ray, which is not installed"):
        ReanalysisPool(reanalysis_config(mazero_args(reanalyse_workers=2)), None, None, None)


@pytest.mark.subprocess
def test_unreachable_ray_address_exits_nonzero(tmp_path):
    proc = run_main(["--config=mazero_matrix", "--env-config=matrix", "with", "reanalyse_workers=1",
                     "ray_address=127.0.0.1:9", "t_max=10"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "cannot reach the Ray cluster at ray_address='127.0.0.1:9'" in proc.stdout + proc.stderr
