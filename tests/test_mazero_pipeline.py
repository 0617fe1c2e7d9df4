"""The pipelined MAZero run (`selfplay_workers >= 1`, run/mazero_selfplay.py): self-play actors on Ray collect beside
the learner; the run completes with the configured replay ratio, survives a killed actor, and its checkpoints
(which drop the episodes in flight, and say so) resume.

A run through main.py starts its own local Ray; the in-process runs share one local two-CPU Ray (`local_ray`)."""
import os
import signal
import sys

import pytest
import torch

from helpers.harness_helpers import load_json, run_main, sacred_runs
from helpers.mazero_args import mazero_args
from helpers.mazero_run_helpers import CHECKPOINT_T, train
from run.mazero_config import build_mazero_config
from run.mazero_selfplay import SelfPlayActors
from utils.checkpoint import list_checkpoints

torch.set_num_threads(1)

TINY = ["runner=episode", "batch_size_run=1", "t_max=50", "batch_transitions=8", "num_simulations=3",
        "sampled_actions=3", "reanalyse_ratio=0.5", "test_interval=30", "test_nepisode=2", "log_interval=30",
        "learner_log_interval=0", "runner_log_interval=5", "latent_dim=16", "representation_hidden=[16]",
        "dynamics_hidden=[16]", "attention_heads=2", "attention_ff_dim=16", "projection_hidden=16",
        "projection_dim=16", "predictor_hidden=8", "save_model=True", "save_model_interval=30", "selfplay_workers=1",
        "selfplay_refresh=2"]
KILL_AT_BATCH = 20  # the actor is killed while collecting the 20th batch of the run


@pytest.mark.subprocess
def test_pipelined_run_completes_with_the_configured_replay_ratio(tmp_path):
    run_main(["--config=mazero", "--env-config=matrix", "with"] + TINY, tmp_path, timeout=600)
    (run_dir,) = sacred_runs(tmp_path, "mazero", "matrix")
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    info = load_json(run_dir, "info.json")
    # one-step episodes from the actor, one per batch: t_env 1, 2, ..., 51; 0.5 updates per stored env step once 8
    # transitions are stored, caught up after every batch
    updates_after_training = dict(zip(info["updates_T"], info["updates"]))  # the last update logged at each t_env
    for t_env, updates in updates_after_training.items():
        assert updates == int(0.5 * t_env), (t_env, updates)
    assert info["updates"][-1] == 25  # int(0.5 * 51), reached at t_env 50
    assert info["test_return_mean_T"] == [1, 31, 51]  # evaluation in the learner's process as before
    assert "return_mean" in info  # the actor's training returns, logged on the run's env-step axis
    for key in ("time_share_selfplay_wait", "time_share_gradient", "env_steps_per_second", "updates_per_second",
                "selfplay_actor_restarts", "selfplay_actor_search_seconds"):
        assert key in info, key
    assert info["replay_ratio"][-1] == 25 / 51
    # each checkpoint says how many episodes the actor was collecting (one batch of one episode), not stored
    assert info["checkpoint_episodes_dropped"] == [1, 1, 1]


@pytest.mark.subprocess
def test_a_killed_actor_is_replaced_and_a_pipelined_checkpoint_resumes(tmp_path, local_ray, monkeypatch):
    actors, batches = [], []
    original = SelfPlayActors.next_batch

    def next_batch(self, training_started):
        if self not in actors:
            actors.append(self)
        batches.append(None)
        if len(batches) == KILL_AT_BATCH:
            os.kill(self.worker_pids()[0], signal.SIGKILL)
        return original(self, training_started)

    monkeypatch.setattr(SelfPlayActors, "next_batch", next_batch)
    run_dir, info = train(tmp_path, "pipelined", selfplay_workers=1, selfplay_refresh=3)
    assert actors[0].restarts == 1 and info["selfplay_actor_restarts"][-1] == 1
    assert list_checkpoints(run_dir) == [CHECKPOINT_T, 61]
    state = torch.load(os.path.join(run_dir, str(CHECKPOINT_T), "run_state.th"), weights_only=False)
    assert state["selfplay"] == {"episodes_in_flight_dropped": 1}
    for t_env, updates in ((CHECKPOINT_T, 15), (61, 30)):
        assert torch.load(os.path.join(run_dir, str(t_env), "learner_state.th"))["update_count"] == updates

    resumed_dir, resumed_info = train(tmp_path, "resumed", seed=8, checkpoint_path=run_dir, load_step=CHECKPOINT_T,
                                      selfplay_workers=1, selfplay_refresh=3)
    assert list_checkpoints(resumed_dir) == [61]
    assert torch.load(os.path.join(resumed_dir, "61", "learner_state.th"))["update_count"] == 30
    replay = torch.load(os.path.join(resumed_dir, "61", "replay.th"), weights_only=False)
    assert replay["counters"]["transitions_collected"] == 61  # the checkpoint's 31 and 30 collected after it
    assert resumed_info["updates_T"][0] > CHECKPOINT_T and resumed_info["test_return_mean_T"][-1] == 61


def start_actors(**overrides):
    args = mazero_args(**overrides)
    config = build_mazero_config(args)
    return SelfPlayActors(args, config.loop, config.reanalysis, start_t_env=0)


@pytest.mark.subprocess
def test_more_workers_of_both_kinds_than_cpus_is_a_clear_error(local_ray):
    with pytest.raises(SystemExit, match=r"selfplay_workers=2 \(1 CPU each\) and reanalyse_workers=1 x "
                                         r"reanalyse_num_cpus=1 need 3 CPUs, the Ray cluster has 2"):
        start_actors(selfplay_workers=2, reanalyse_workers=1)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit, match=r"selfplay_workers=1 needs Ray, which is not installed"):
        start_actors(selfplay_workers=1)
