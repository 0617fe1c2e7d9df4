"""MAPPO and IPPO through src/main.py on the matrix game, lbforaging (gymma) and SMAX 3m: completed Sacred
records with EPyMARL's metric names; MAPPO solves the penalty game."""
import pytest

from helpers.harness_helpers import load_json, run_main, sacred_runs

pytestmark = pytest.mark.subprocess

LEARNER_METRICS = ("pg_loss", "critic_loss", "advantage_mean", "agent_grad_norm", "critic_grad_norm", "pi_max",
                   "entropy")
# two envs per batch keep the spawned env workers few; on-policy: buffer = batch = the envs' episodes
SMALL_BATCH = ["batch_size_run=2", "buffer_size=2", "batch_size=2", "save_git_info=False"]


def completed_metrics(tmp_path, alg, label):
    runs = sacred_runs(tmp_path, alg, label)
    assert len(runs) == 1
    assert load_json(runs[0], "run.json")["status"] == "COMPLETED"
    metrics = load_json(runs[0], "metrics.json")
    for key in LEARNER_METRICS + ("test_return_mean", "return_mean"):
        assert key in metrics, key
    return metrics


@pytest.mark.parametrize("alg", ["mappo", "ippo"])
def test_matrix_game_end_to_end(tmp_path, alg):
    run_main([f"--config={alg}", "--env-config=matrix", "with", "t_max=40", "test_interval=20", "test_nepisode=2",
              "log_interval=20", "runner_log_interval=20", "learner_log_interval=20"] + SMALL_BATCH, tmp_path)
    metrics = completed_metrics(tmp_path, alg, "matrix")
    assert metrics["return_mean"]["steps"][0] == 2  # t_env counts both envs' steps


@pytest.mark.parametrize("alg, use_rnn", [("mappo", True), ("ippo", False)])
def test_lbforaging_end_to_end(tmp_path, alg, use_rnn):
    run_main([f"--config={alg}", "--env-config=gymma", "with", 'env_args.key="lbforaging:Foraging-8x8-2p-3f-v3"',
              "env_args.time_limit=50", f"use_rnn={use_rnn}", "t_max=300", "test_interval=150", "test_nepisode=2",
              "log_interval=150", "runner_log_interval=150", "learner_log_interval=150"] + SMALL_BATCH, tmp_path)
    metrics = completed_metrics(tmp_path, alg, "lbforaging:Foraging-8x8-2p-3f-v3")
    assert all(0 < length <= 50 for length in metrics["ep_length_mean"]["values"])


@pytest.mark.parametrize("alg", ["mappo", "ippo"])
def test_smax_3m_end_to_end(tmp_path, alg):
    """SMAX runs as one in-process vmapped batch of batch_size_run 8 (the configs' default)."""
    run_main([f"--config={alg}", "--env-config=smax", "with", "env_args.map_name=3m", "t_max=400",
              "test_interval=200", "test_nepisode=8", "log_interval=200", "runner_log_interval=200",
              "learner_log_interval=200", "save_git_info=False"], tmp_path, timeout=600)
    metrics = completed_metrics(tmp_path, alg, "3m")
    assert "test_battle_won_mean" in metrics and "battle_won_mean" in metrics


def test_mappo_solves_the_penalty_game(tmp_path):
    """Penalty game with k = 0: the coordinated corners pay 10; MAPPO's greedy policy gets there."""
    run_main(["--config=mappo", "--env-config=matrix", "with", "env_args.game=penalty", "env_args.penalty=0",
              "t_max=400", "test_interval=200", "test_nepisode=2", "log_interval=200", "runner_log_interval=200",
              "learner_log_interval=200", "seed=1"] + SMALL_BATCH, tmp_path)
    metrics = completed_metrics(tmp_path, "mappo", "matrix")
    assert metrics["test_return_mean"]["values"][-1] == 10.0
