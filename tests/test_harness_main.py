"""src/main.py: config merging, Sacred records, bad input, and end-to-end QMIX / VDN / IQL on the matrix game."""
import os

import pytest

from helpers.harness_helpers import load_json, merged_config, run_main, sacred_runs

TINY = ["t_max=60", "test_interval=30", "test_nepisode=4", "batch_size=8", "buffer_size=64",
        "log_interval=30", "runner_log_interval=30", "learner_log_interval=30", "save_git_info=False"]


def test_merge_order_default_env_alg():
    config = merged_config("qmix", "matrix")
    assert config["t_max"] == 5000  # env config beats default.yaml (10000)
    assert config["obs_last_action"] is False  # alg config beats default.yaml
    assert config["env_args"]["game"] == "climbing"  # nested env_args merged key-wise
    assert config["gamma"] == 0.99  # untouched default


@pytest.mark.subprocess
def test_help_comes_first_and_lists_configs_env_configs_and_maps(tmp_path):
    proc = run_main(["--config=qmix", "--help"], tmp_path)  # used to say "missing --env-config"
    assert proc.stdout.startswith("usage: python src/main.py --config=ALG --env-config=ENV")
    for listed in ("mazero_cpu, mazero_matrix, qmix", "gymma, matrix, sc2, sc2v2, smax", "2s3z, 3m", "docs/harness.md"):
        assert listed in proc.stdout
    assert proc.stderr == ""


@pytest.mark.subprocess
@pytest.mark.parametrize("argv, expected, listed", [
    (["--config=nope", "--env-config=matrix"], "unknown algorithm config 'nope'", "iql"),
    (["--config=qmix", "--env-config=nope"], "unknown environment config 'nope'", "matrix"),
    (["--env-config=matrix"], "missing --config=NAME", "qmix"),
    (["--config", "qmix", "--env-config=matrix"], "write --config=NAME", "qmix"),
])
def test_bad_config_names_list_the_choices(tmp_path, argv, expected, listed):
    proc = run_main(argv, tmp_path, check=False)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "available: " in proc.stderr and listed in proc.stderr


@pytest.mark.subprocess
def test_wrong_with_keys_are_a_clear_error(tmp_path):
    proc = run_main(["--config=qmix", "--env-config=matrix", "with", "t_maxx=100", "env_args.gamee=penalty",
                     "save_git_info=False"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "'t_maxx' (did you mean 't_max'?)" in proc.stderr
    assert "'env_args.gamee' (did you mean 'env_args.game'?)" in proc.stderr
    assert "ConfigAddedError" in proc.stderr and "--force" in proc.stderr
    assert not os.path.exists(os.path.join(tmp_path, "sacred", "qmix"))


@pytest.mark.subprocess
def test_force_flag_adds_new_keys(tmp_path):
    proc = run_main(["--config=qmix", "--env-config=matrix", "print_config", "-f", "with", "my_new_key=7",
                     "save_git_info=False"], tmp_path)
    assert "my_new_key = 7" in proc.stdout


@pytest.mark.subprocess
def test_print_config_shows_with_updates(tmp_path):
    proc = run_main(["--config=vdn", "--env-config=matrix", "print_config", "with", "t_max=123",
                     "env_args.game=penalty", "save_git_info=False"], tmp_path)
    assert "t_max = 123" in proc.stdout and "penalty" in proc.stdout and "vdn" in proc.stdout
    assert not sacred_runs(tmp_path, "vdn", "matrix")  # print_config is unobserved


@pytest.mark.subprocess
@pytest.mark.parametrize("alg", ["qmix", "vdn", "iql"])
def test_end_to_end_run_leaves_a_completed_sacred_record(tmp_path, alg):
    run_main([f"--config={alg}", "--env-config=matrix", "with", "seed=3"] + TINY, tmp_path)
    runs = sacred_runs(tmp_path, alg, "matrix")
    assert len(runs) == 1
    assert load_json(runs[0], "run.json")["status"] == "COMPLETED"
    config = load_json(runs[0], "config.json")
    assert config["seed"] == 3 and config["env_args"]["seed"] == 3 and config["name"] == alg
    metrics = load_json(runs[0], "metrics.json")
    for key in ("test_return_mean", "return_mean", "ep_length_mean", "epsilon", "loss", "td_error_abs"):
        assert key in metrics, key
    assert metrics["test_return_mean"]["steps"][0] == 1  # first evaluation after the first episode
    assert all(isinstance(v, float) for v in metrics["test_return_mean"]["values"])
    info = load_json(runs[0], "info.json")
    assert info["test_return_mean"] == metrics["test_return_mean"]["values"]
    assert info["test_return_mean_T"] == metrics["test_return_mean"]["steps"]


@pytest.mark.subprocess
def test_parallel_runner_end_to_end_counts_every_env_step(tmp_path):
    run_main(["--config=qmix", "--env-config=matrix", "with", "runner=parallel", "batch_size_run=3",
              "test_nepisode=3"] + TINY, tmp_path)
    run_dir = sacred_runs(tmp_path, "qmix", "matrix")[0]
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    metrics = load_json(run_dir, "metrics.json")
    # 3 one-step episodes per runner.run(): t_env goes 3, 6, 9, ...
    assert all(step % 3 == 0 for step in metrics["return_mean"]["steps"])
    assert metrics["test_return_mean"]["steps"][0] == 3


@pytest.mark.subprocess
def test_qmix_learns_the_penalty_game(tmp_path):
    """QMIX finds an optimal joint action (payoff 10) of the penalty game with k = 0 within 1500 episodes."""
    run_main(["--config=qmix", "--env-config=matrix", "with", "env_args.game=penalty", "env_args.penalty=0",
              "t_max=1500", "epsilon_anneal_time=1000", "test_interval=500", "log_interval=500",
              "runner_log_interval=500", "learner_log_interval=500", "save_git_info=False", "seed=1"],
             tmp_path, timeout=400)
    metrics = load_json(sacred_runs(tmp_path, "qmix", "matrix")[0], "metrics.json")
    assert metrics["test_return_mean"]["values"][-1] == 10.0


@pytest.mark.subprocess
def test_sacred_flags_file_observer_comment_and_unobserved(tmp_path):
    extra_dir = tmp_path / "extra_observer"
    run_main(["--config=iql", "--env-config=matrix", "-F", str(extra_dir), "-c", "flag check", "with"] + TINY,
             tmp_path)
    run_dir = sacred_runs(tmp_path, "iql", "matrix")[0]
    assert load_json(run_dir, "run.json")["meta"]["comment"] == "flag check"
    assert load_json(os.path.join(extra_dir, "1"), "run.json")["status"] == "COMPLETED"

    run_main(["--config=vdn", "--env-config=matrix", "-u", "with"] + TINY, tmp_path)
    assert not sacred_runs(tmp_path, "vdn", "matrix")


@pytest.mark.subprocess
def test_unknown_smax_map_lists_the_maps(tmp_path):
    proc = run_main(["--config=qmix", "--env-config=smax", "with", "env_args.map_name=nope", "save_git_info=False"],
                    tmp_path, check=False)
    assert proc.returncode != 0
    assert "Unknown SMAX map 'nope'" in proc.stderr and "3s5z" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("update, expected", [
    ("learner=nope", "unknown learner 'nope'; registered: "),
    ("mixer=nope", "unknown mixer 'nope'; registered: qmix, vdn"),
    ("batch_size_run=2", "runner 'episode' needs batch_size_run 1"),
])
def test_invalid_settings_exit_with_a_message(tmp_path, update, expected):
    proc = run_main(["--config=qmix", "--env-config=matrix", "with", update, "save_git_info=False"], tmp_path,
                    check=False)
    assert proc.returncode == 1
    assert expected in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.subprocess
def test_a_run_with_env_worker_processes_ends_without_sacred_capture_warnings(tmp_path):
    # spawn workers start multiprocessing's resource tracker, which once held Sacred's output capture open to the
    # end of the process: every such run ended with "UserWarning: tee_stdout.wait timeout. Forcibly terminating."
    proc = run_main(["--config=mappo", "--env-config=matrix", "with", "t_max=16", "test_interval=8",
                     "test_nepisode=8", "log_interval=8", "save_git_info=False"], tmp_path)
    assert "Completed after" in proc.stderr
    assert "tee_stdout.wait timeout" not in proc.stderr and "tee_stderr.wait timeout" not in proc.stderr
