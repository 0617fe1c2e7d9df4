"""End to end: `python src/main.py --config=mazero ...` through the mazero run loop, with tiny budgets."""
import os

import pytest

from helpers.harness_helpers import load_json, run_main, sacred_runs

TINY = ["runner=episode", "batch_size_run=1", "t_max=50", "batch_transitions=8", "num_simulations=3",
        "sampled_actions=3", "reanalyse_ratio=0.5", "test_interval=30", "test_nepisode=2", "log_interval=30",
        "learner_log_interval=0", "runner_log_interval=30", "latent_dim=16", "representation_hidden=[16]",
        "dynamics_hidden=[16]", "attention_heads=2", "attention_ff_dim=16", "projection_hidden=16",
        "projection_dim=16", "predictor_hidden=8", "save_model=True", "save_model_interval=30"]


@pytest.mark.subprocess
def test_matrix_run_completes_with_mazero_metrics_and_checkpoint(tmp_path):
    run_main(["--config=mazero", "--env-config=matrix", "with"] + TINY, tmp_path)
    (run_dir,) = sacred_runs(tmp_path, "mazero", "matrix")
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    info = load_json(run_dir, "info.json")
    for key in ("test_return_mean", "return_mean", "loss", "reward_loss", "value_loss", "policy_loss",
                "consistency_loss", "grad_norm", "time_share_selfplay_search", "time_share_reanalyse_search",
                "time_share_gradient", "env_steps_per_second", "updates_per_second"):
        assert key in info, key
    # 0.5 updates per env step once batch_transitions transitions are stored: 25 updates by the last t_env, 51
    assert 20 <= info["updates"][-1] <= 26
    # the run ends with a test and a checkpoint at its last t_env although test_interval=30 falls at 1 and 31
    assert info["test_return_mean_T"] == [1, 31, 51]
    (token,) = os.listdir(os.path.join(str(tmp_path), "models"))
    steps = sorted(int(s) for s in os.listdir(os.path.join(str(tmp_path), "models", token)) if s.isdigit())
    assert steps == [31, 51]  # the last two kept
    files = set(os.listdir(os.path.join(str(tmp_path), "models", token, str(steps[-1]))))
    assert {"agent.th", "target_agent.th", "target_snapshot.th", "opt.th", "learner_state.th"} <= files

    # evaluate=True from that checkpoint, policy-argmax evaluation (test_mcts=False)
    run_main(["--config=mazero", "--env-config=matrix", "with"] + TINY
             + ["evaluate=True", "test_mcts=False", f"checkpoint_path={tmp_path}/models/{token}"], tmp_path)
    eval_dir = sacred_runs(tmp_path, "mazero", "matrix")[-1]
    assert "test_return_mean" in load_json(eval_dir, "info.json")


def test_a_replay_larger_than_memory_is_announced_naming_buffer_transitions(caplog):
    import logging
    from types import SimpleNamespace

    from components.mazero_replay import MAZeroReplayBuffer, ReplayConfig
    from helpers.mazero_args import mazero_args
    from run.mazero_run import warn_if_replay_exceeds_memory
    from utils.config_record import record_from_config

    def replay(buffer_transitions):  # 3m: 3 agents, 9 actions, 87 inputs; 4 sampled joint actions
        args = mazero_args(3, 9, sampled_actions=4, buffer_transitions=buffer_transitions)
        return MAZeroReplayBuffer(record_from_config(ReplayConfig, args), 87)

    log = SimpleNamespace(console_logger=logging.getLogger("replay_memory"))
    with caplog.at_level(logging.WARNING, logger="replay_memory"):
        warn_if_replay_exceeds_memory(replay(10 ** 6), log)  # 1.3 GB
        assert not caplog.records
        warn_if_replay_exceeds_memory(replay(10 ** 12), log)  # starts: storage grows as it fills
    (record,) = caplog.records
    assert "buffer_transitions=1000000000000 transitions of 1280 bytes" in record.getMessage()
