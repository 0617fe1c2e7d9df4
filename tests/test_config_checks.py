"""config_checks: every numeric config key is checked for type and range before Sacred starts or any env is built."""
import glob
import os

import pytest
import yaml

from config_checks import (NUMERIC_KEYS, ConfigValueError, boolean_keys, check_config, check_transition_keys,
                           coerce_booleans)
from helpers.harness_helpers import REPO_ROOT, load_json, merged_config, run_main, sacred_runs
from main import parse_value

CONFIG_DIR = os.path.join(REPO_ROOT, "src", "config")
ALGS = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CONFIG_DIR, "algs", "*.yaml")))
ENVS = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CONFIG_DIR, "envs", "*.yaml")))


def is_numeric(value):
    if isinstance(value, list):
        return all(is_numeric(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_every_numeric_key_of_the_shipped_configs_has_a_rule():
    paths = [os.path.join(CONFIG_DIR, "default.yaml")] + glob.glob(os.path.join(CONFIG_DIR, "*", "*.yaml"))
    numeric = set()
    for path in paths:
        with open(path) as f:
            numeric |= {key for key, value in yaml.safe_load(f).items() if is_numeric(value)}
    assert numeric, "no numeric key found"
    assert sorted(numeric - set(NUMERIC_KEYS)) == []
    assert sorted(set(NUMERIC_KEYS) - numeric - {"seed"}) == []  # no rule for a key that does not exist


@pytest.mark.parametrize("alg", ALGS)
def test_every_shipped_config_passes(alg):
    for env in ENVS:
        check_config(dict(merged_config(alg, env), seed=3))


@pytest.mark.parametrize("update, message", [
    (dict(batch_size=-1), "config key 'batch_size' must be >= 1, got -1"),
    (dict(batch_size=0), "config key 'batch_size' must be >= 1, got 0"),
    (dict(lr="abc"), "config key 'lr' must be a real number > 0, got 'abc'"),
    (dict(lr=float("nan")), "config key 'lr' must be a real number > 0, got nan"),
    (dict(num_simulations="abc"), "config key 'num_simulations' must be an integer >= 1, got 'abc'"),
    (dict(num_simulations=2.0), "config key 'num_simulations' must be an integer >= 1, got 2.0"),
    (dict(sampled_actions=True), "config key 'sampled_actions' must be an integer >= 1, got True"),
    (dict(t_max=-5), "config key 't_max' must be >= 1, got -5"),
    (dict(t_max=0), "config key 't_max' must be >= 1, got 0"),
    (dict(os_rho=1.5), "config key 'os_rho' must be a real number >= 0 and <= 1, got 1.5"),
    (dict(gamma=-0.1), "config key 'gamma' must be a real number >= 0 and <= 1, got -0.1"),
    (dict(attention_dropout=1), "config key 'attention_dropout' must be a real number >= 0 and < 1, got 1"),
    (dict(dynamics_hidden=[64, 0]), "config key 'dynamics_hidden' must be a list of integers >= 1, got [64, 0]"),
    (dict(seed=-1), "config key 'seed' must be >= 0, got -1"),
    (dict(buffer_size=32, batch_size=64), "config key 'buffer_size' (32) must be >= batch_size (64)"),
    (dict(buffer_transitions=32, batch_transitions=64),
     "config key 'buffer_transitions' (32) must be >= batch_transitions (64)"),
    (dict(buffer_transitions=1), "config key 'buffer_transitions' must be >= 2, got 1"),
    (dict(ray_address=5), "config key 'ray_address' must be null or a non-empty string, got 5"),
    (dict(two_hot_target="floor"), "config key 'two_hot_target' must be one of 'exact', 'official', got 'floor'"),
    (dict(timeout_terminal=1), "config key 'timeout_terminal' must be one of True, False, got 1"),
    (dict(reanalyse_num_simulations="abc"),
     "config key 'reanalyse_num_simulations' must be null or an integer >= 1, got 'abc'"),
])
def test_bad_values_name_the_key(update, message):
    config = dict(merged_config("mazero_cpu", "smax"), **update)
    with pytest.raises(ConfigValueError) as info:
        check_config(config)
    assert message in str(info.value)


def test_keys_of_other_algorithms_are_not_required():
    config = merged_config("qmix", "matrix")
    assert "num_simulations" not in config
    check_config(config)
    with pytest.raises(ConfigValueError, match="'hypernet_layers' must be one of 1, 2, got 3"):
        check_config(dict(config, hypernet_layers=3))


@pytest.mark.parametrize("alg, update, named", [
    ("mazero_cpu", {"run": "default"}, "run: default"),
    ("mazero_cpu", {"agent": "rnn"}, "agent: rnn"),
    ("qmix", {"learner": "mazero_learner"}, "learner: mazero_learner"),
])
def test_registry_parts_that_cannot_work_together_are_refused_by_name(alg, update, named):
    config = dict(merged_config(alg, "smax"), **update)
    with pytest.raises(ConfigValueError, match="cannot work with|are MAZero's parts") as info:
        check_config(config)
    assert named in str(info.value)
    check_config(dict(merged_config("mazero_cpu", "smax"), agent="mazero_flat"))  # both MAZero models fit


@pytest.mark.subprocess
@pytest.mark.parametrize("update, key", [("batch_size=-1", "batch_size"), ("t_max=-5", "t_max"),
                                         ("lr=abc", "lr")])
def test_main_refuses_before_sacred_and_the_env_with_exit_2(tmp_path, update, key):
    # sc2 without StarCraft II fails when its env is built (exit 1): exit 2 and no record show the check ran first
    proc = run_main(["--config=qmix", "--env-config=sc2", "with", update, "save_git_info=False"], tmp_path,
                    check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"ERROR: config key {key!r} must be" in proc.stderr
    assert "Traceback" not in proc.stderr and "StarCraft" not in proc.stderr
    assert not os.path.exists(tmp_path / "sacred")


@pytest.mark.parametrize("spelling, value", [("True", True), ("true", True), ("yes", True), ("1", True),
                                             ("False", False), ("false", False), ("NO", False), ("0", False)])
def test_boolean_keys_take_every_spelling_of_a_boolean(spelling, value):
    config = merged_config("mazero_cpu", "sc2")
    updates = {"use_os_lambda": parse_value(spelling), "env_args.continuing_episode": parse_value(spelling)}
    assert "env_args.continuing_episode" in boolean_keys(config)
    assert coerce_booleans(config, updates) == {"use_os_lambda": value, "env_args.continuing_episode": value}


@pytest.mark.parametrize("key, value", [("use_os_lambda", "maybe"), ("share_parameters", 2), ("save_model", "nope"),
                                        ("env_args.continuing_episode", "perhaps")])
def test_boolean_keys_refuse_anything_else_by_name(key, value):
    config = merged_config("mazero_cpu", "sc2")
    with pytest.raises(ConfigValueError, match=rf"config key '{key}' must be a boolean \(True/False, true/false, "
                                               rf"yes/no or 1/0\), got {value!r}"):
        coerce_booleans(config, {key: value})
    bad = merged_config("mazero_cpu", "sc2")
    node = bad
    *parents, leaf = key.split(".")
    for parent in parents:
        node = node[parent]
    node[leaf] = value
    with pytest.raises(ConfigValueError, match=rf"config key '{key}' must be a boolean"):
        check_config(bad, defaults=config)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ""])
def test_name_must_be_one_folder(name):
    with pytest.raises(ConfigValueError, match="config key 'name' must be a plain name"):
        check_config(dict(merged_config("qmix", "matrix"), name=name))


@pytest.mark.subprocess
@pytest.mark.parametrize("tokens, message", [
    (["use_os_lambda=maybe"], "config key 'use_os_lambda' must be a boolean"),
    (["name=../../x"], "config key 'name' must be a plain name"),
    (["FILE"], "config key 'gamma' must be a real number >= 0 and <= 1, got 5"),
    (["BOOLFILE"], "config key 'share_parameters' must be a boolean"),
])
def test_main_checks_with_values_and_with_files_before_sacred(tmp_path, tokens, message):
    (tmp_path / "gamma.yaml").write_text("gamma: 5\n")
    (tmp_path / "bools.yaml").write_text("share_parameters: maybe\n")
    files = {"FILE": str(tmp_path / "gamma.yaml"), "BOOLFILE": str(tmp_path / "bools.yaml")}
    tokens = [files.get(token, token) for token in tokens]
    proc = run_main(["--config=mazero_cpu", "--env-config=matrix", "with"] + tokens, tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"ERROR: {message}" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "sacred")


@pytest.mark.subprocess
def test_string_booleans_reach_the_run_and_its_record_as_bools(tmp_path):
    (tmp_path / "update.yaml").write_text("obs_last_action: 'no'\n")  # quoted: a string, not YAML's boolean
    run_main(["--config=qmix", "--env-config=matrix", "with", "use_rnn=false", "test_greedy=yes", "save_model=0",
              str(tmp_path / "update.yaml"), "t_max=20", "test_interval=10", "test_nepisode=3",
              "save_git_info=False"], tmp_path)
    run_dir = sacred_runs(tmp_path, "qmix", "matrix")[-1]
    config = load_json(run_dir, "config.json")
    assert (config["use_rnn"], config["test_greedy"], config["save_model"], config["obs_last_action"]) == \
        (False, True, False, False)
    assert config["test_nepisode"] == 3  # recorded as given: exactly 3 test episodes ran (test_harness_runners)


# --- MAZero's transition-counted sizes: batch_transitions and buffer_transitions, not EPyMARL's episode keys --------
EPISODE_KEY_MESSAGE = ("config key 'batch_size' counts episodes (EPyMARL's QMIX/MAPPO); MAZero counts transitions: "
                       "write batch_transitions=256 instead")


def test_a_mazero_config_refuses_the_episode_counted_keys_its_user_sets():
    mazero, qmix = merged_config("mazero_cpu", "smax"), merged_config("qmix", "smax")
    assert "batch_size" in mazero  # default.yaml's, unused by MAZero: only keys a user sets are refused
    with pytest.raises(ConfigValueError) as info:
        check_transition_keys(mazero, {"batch_size": 256})
    assert str(info.value) == EPISODE_KEY_MESSAGE
    with pytest.raises(ConfigValueError, match="'buffer_size' counts episodes .* write buffer_transitions=20000"):
        check_transition_keys(mazero, {"buffer_size": 20000})
    check_transition_keys(mazero, {"batch_transitions": 256})
    check_transition_keys(qmix, {"batch_size": 256, "buffer_size": 5000})  # QMIX counts episodes


@pytest.mark.subprocess
@pytest.mark.parametrize("tokens", [["batch_size=256"], ["FILE"]])
def test_main_refuses_batch_size_for_mazero_with_exit_2(tmp_path, tokens):
    (tmp_path / "sizes.yaml").write_text("batch_size: 256\n")
    tokens = [str(tmp_path / "sizes.yaml") if token == "FILE" else token for token in tokens]
    proc = run_main(["--config=mazero_cpu", "--env-config=matrix", "with"] + tokens, tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"ERROR: {EPISODE_KEY_MESSAGE}" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "sacred")


def test_an_algorithm_yaml_of_a_mazero_run_may_not_set_the_episode_keys(tmp_path, monkeypatch):
    import shutil

    import config_loader

    config_dir = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    with open(config_dir / "algs" / "mazero_cpu.yaml", "a") as f:
        f.write("buffer_size: 5000\n")
    monkeypatch.setattr(config_loader, "CONFIG_DIR", str(config_dir))
    with pytest.raises(config_loader.UsageError, match=r"config/algs/mazero_cpu.yaml: config key 'buffer_size' "
                                                       r"counts episodes .* write buffer_transitions=5000 instead"):
        config_loader.build_config(["--config=mazero_cpu", "--env-config=matrix"])
    with pytest.raises(config_loader.UsageError, match="write batch_transitions=64 instead"):
        config_loader.config_args("mazero", "matrix", batch_size=64)


def test_a_sweep_grid_of_mazero_runs_may_not_set_the_episode_keys(tmp_path):
    from sweep.grid import GridError, load_grid

    grid = tmp_path / "grid.yaml"
    grid.write_text("configs: [mazero_cpu, qmix]\nenv_configs: [matrix]\nseeds: [1]\ngrid: {batch_size: [16]}\n")
    with pytest.raises(GridError, match="run mazero_cpu_matrix_batch_size=16_seed1: config key 'batch_size' counts "
                                        "episodes"):
        load_grid(str(grid))
