import dataclasses
import os
import re

import pytest
import yaml

from helpers.mazero_args import mazero_args
from run.mazero_config import build_mazero_config

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "src", "config")
SRC_DIR = os.path.join(os.path.dirname(__file__), "..", "src")
# What the CPU preset may change: budgets only (plus its label and run length).
BUDGET_KEYS = {"name", "t_max", "num_simulations", "sampled_actions", "batch_transitions", "reanalyse_ratio",
               "updates_per_env_step", "batch_size_run"}


def _load(name):
    with open(os.path.join(CONFIG_DIR, "algs", f"{name}.yaml")) as f:
        return yaml.safe_load(f)


def test_cpu_preset_changes_only_budgets():
    official, cpu = _load("mazero"), _load("mazero_cpu")
    assert set(official) == set(cpu)
    changed = {key for key in official if official[key] != cpu[key]}
    assert changed <= BUDGET_KEYS, changed - BUDGET_KEYS


# What the matrix-game config may change: the official matrix model (config/matrix), budgets, and the one-env,
# short-interval running of a one-step game.
MATRIX_KEYS = BUDGET_KEYS | {"latent_dim", "representation_hidden", "dynamics_hidden", "value_support_size",
                             "reward_support_size", "feature_norm", "runner", "batch_size_run", "test_interval",
                             "log_interval", "runner_log_interval", "learner_log_interval", "save_model_interval"}


def test_matrix_config_changes_only_model_sizes_and_budgets():
    official, matrix = _load("mazero"), _load("mazero_matrix")
    assert set(official) == set(matrix)
    changed = {key for key in official if official[key] != matrix[key]}
    assert changed <= MATRIX_KEYS, changed - MATRIX_KEYS
    assert (matrix["latent_dim"], matrix["value_support_size"], matrix["reward_support_size"]) == (64, 10, 3)
    assert not matrix["feature_norm"]


def test_official_values():
    c = _load("mazero")
    assert (c["num_simulations"], c["sampled_actions"], c["os_rho"], c["os_lambda"]) == (100, 10, 0.25, 0.8)
    assert (c["awpo_alpha"], c["adv_clip"], c["batch_transitions"], c["lr"], c["grad_norm_clip"]) == (
        2.0, 3.0, 256, 0.0005, 5)
    assert (c["unroll_steps"], c["td_steps"], c["target_model_interval"], c["updates_per_env_step"]) == (5, 5, 200,
                                                                                                        0.5)
    assert (c["reward_loss_coef"], c["value_loss_coef"], c["policy_loss_coef"], c["consistency_loss_coef"]) == (
        1.0, 0.25, 1.0, 2.0)
    assert (c["per_alpha"], c["per_beta_start"], c["reanalyse_ratio"], c["gamma"]) == (0.6, 0.4, 1.0, 0.99)


def test_every_key_is_commented_and_read_by_the_code():
    sources = []
    for root, _, files in os.walk(SRC_DIR):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name)) as f:
                    sources.append(f.read())
    code = "\n".join(sources)
    with open(os.path.join(CONFIG_DIR, "algs", "mazero.yaml")) as f:
        lines = [line for line in f if re.match(r"^\w+:", line)]
    for line in lines:
        key = line.split(":")[0]
        assert "#" in line, f"{key} has no comment"
        # read from args, by its quoted name, or as a field of a typed config record (utils.config_record)
        assert re.search(rf"(args\.{key}\b|[\"']{key}[\"']|^    {key}: \w+.*  # )", code, re.MULTILINE), \
            f"{key} is not read by any code in src/"


def test_an_old_config_with_the_model_key_says_what_to_write_instead():
    from run.common import args_sanity_check

    with pytest.raises(ValueError, match=r"instead of `model: flat` write `agent: mazero_flat`"):
        args_sanity_check({"model": "flat", "agent": "mazero"}, log=None)
    with pytest.raises(ValueError, match=r"instead of `model: mazero` write `agent: mazero`"):
        args_sanity_check({"model": "mazero", "agent": "mazero"}, log=None)


def test_the_builder_reads_every_record_by_key_name_once():
    args = mazero_args(3, 9, num_simulations=6, reanalyse_num_simulations=3, batch_transitions=32,
                       buffer_transitions=64)
    config = build_mazero_config(args)
    assert config.search.num_simulations == 6
    assert config.reanalysis.search == dataclasses.replace(config.search, num_simulations=3)
    assert build_mazero_config(mazero_args(3, 9)).reanalysis.search.num_simulations == 100  # null: num_simulations
    assert (config.replay.batch_transitions, config.replay.buffer_transitions) == (32, 64)
    assert config.learner.unroll_steps == config.replay.unroll_steps == args.unroll_steps
    assert (config.acting.n_agents, config.model.n_actions) == (3, 9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learner.lr = 1.0


@pytest.mark.parametrize("key, value", [("buffer_transitions", 1), ("batch_transitions", 0), ("reanalyse_prefetch", -1),
                                        ("ray_address", ""), ("selfplay_refresh", 0), ("test_mcts", "yes"),
                                        ("device", "tpu"), ("reanalyse_num_simulations", 0)])
def test_a_bad_value_is_refused_naming_its_key(key, value):
    with pytest.raises(ValueError, match=key):
        build_mazero_config(mazero_args(**{key: value}))


def test_a_replay_smaller_than_its_batch_is_refused():
    with pytest.raises(ValueError, match=r"'buffer_transitions' \(8\) must be >= batch_transitions \(16\)"):
        build_mazero_config(mazero_args(buffer_transitions=8, batch_transitions=16))
