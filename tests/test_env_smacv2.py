"""sc2v2 env against the fake SMACv2 (tests/fake_smacv2): capability configs, SMACv2's constructor keywords, the
install hint when SMACv2 is missing, and QMIX / MAZero runs through src/main.py."""
import inspect
import os
import sys

import numpy as np
import pytest
import yaml

from envs.errors import SMACv2SetupError
from envs.smacv2_env import SMACv2Env, scenario_env_args
from helpers.harness_helpers import REPO_ROOT, load_json, sacred_runs

TESTS = os.path.dirname(os.path.abspath(__file__))
FAKE_SMACV2 = os.path.join(TESTS, "fake_smacv2")
SC2V2_YAML = os.path.join(REPO_ROOT, "src", "config", "envs", "sc2v2.yaml")
# EPyMARL's smacv2_configs file names: scenario -> (SC2 map, n_units, n_enemies)
EPYMARL_SCENARIOS = {f"{race}_{n}_vs_{m}": (f"10gen_{race}", n, m) for race in ("protoss", "terran", "zerg")
                     for n, m in ((5, 5), (10, 10), (10, 11), (20, 20), (20, 23))}
EPYMARL_SCENARIOS.update({f"sc2_gen_{race}": (f"10gen_{race}", 5, 5) for race in ("protoss", "terran", "zerg")})


@pytest.fixture
def fake_smacv2(fake_package):
    fake_package("smacv2", FAKE_SMACV2)


@pytest.fixture
def sc2v2_env_args():
    with open(SC2V2_YAML) as f:
        return dict(yaml.safe_load(f)["env_args"], seed=0)


@pytest.mark.parametrize("scenario", sorted(EPYMARL_SCENARIOS))
def test_epymarl_scenario_names(scenario):
    map_name, n_units, n_enemies = EPYMARL_SCENARIOS[scenario]
    env_args = scenario_env_args(scenario)
    assert env_args["map_name"] == map_name
    config = env_args["capability_config"]
    assert (config["n_units"], config["n_enemies"]) == (n_units, n_enemies)
    assert config["team_gen"]["dist_type"] == "weighted_teams" and sum(config["team_gen"]["weights"]) == 1
    assert config["start_positions"]["dist_type"] == "surrounded_and_reflect"


def test_unknown_scenario_lists_the_forms():
    for scenario in ("protoss_5v5", "elves_5_vs_5", None):
        with pytest.raises(ValueError, match="Unknown SMACv2 scenario .*RACE_N_vs_M"):
            scenario_env_args(scenario)
    with pytest.raises(ValueError, match="at least one unit"):
        scenario_env_args("zerg_0_vs_3")


def test_yaml_keys_are_smacv2_keywords(fake_smacv2, sc2v2_env_args):
    from smacv2.env.starcraft2.wrapper import CREATED, StarCraft2Env

    fake_keywords = set(inspect.signature(StarCraft2Env.__init__).parameters)
    fake_keywords |= set(inspect.signature(StarCraft2Env.__mro__[1].__init__).parameters)
    assert set(sc2v2_env_args) - {"map_name"} <= fake_keywords
    env = SMACv2Env(**sc2v2_env_args)
    given = CREATED[-1]
    assert given["map_name"] == "10gen_protoss" and given["capability_config"]["n_units"] == 5
    assert given["obs_own_pos"] is True and given["conic_fov"] is False and given["seed"] == 0
    assert env.scenario == "protoss_5_vs_5" and env.map_name == "10gen_protoss"


@pytest.mark.parametrize("scenario, n_agents, n_actions", [("protoss_5_vs_5", 5, 11), ("terran_10_vs_11", 10, 17),
                                                           ("zerg_20_vs_23", 20, 29)])
def test_episodes_on_the_fake(fake_smacv2, sc2v2_env_args, scenario, n_agents, n_actions):
    env = SMACv2Env(**dict(sc2v2_env_args, map_name=scenario))
    info = env.get_env_info()
    assert (info["n_agents"], info["n_actions"], info["episode_limit"]) == (n_agents, n_actions, 200)
    rng = np.random.default_rng(0)
    env.reset()
    terminated, steps = False, 0
    while not terminated:
        actions = [rng.choice(np.flatnonzero(avail_actions)) for avail_actions in env.get_avail_actions()]
        _, terminated, step_info = env.step(actions)
        steps += 1
    assert steps <= 200 and {"battle_won", "dead_allies", "dead_enemies"} <= set(step_info)
    assert env.get_stats()["battles_game"] == 1


def test_hint_when_smacv2_is_not_installed(missing_package, sc2v2_env_args):
    missing_package("smacv2")
    with pytest.raises(SMACv2SetupError, match="oxwhirl SMACv2 is not installed") as error:
        SMACv2Env(**sc2v2_env_args)
    steps = ("4.10", "git+https://github.com/oxwhirl/smacv2.git", "SMAC_Maps", "SC2PATH", "smacv2_5_units")
    assert all(step in str(error.value) for step in steps)


def run_main(alg, extra_args, tmp_path, pythonpath):
    """src/main.py on sc2v2 with a tiny budget; PYTHONPATH is exactly `pythonpath` (no fake unless given)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, os.path.join(REPO_ROOT, "src", "main.py"), f"--config={alg}", "--env-config=sc2v2",
               "with", "t_max=150", "test_interval=100", "test_nepisode=2", "log_interval=100",
               "runner_log_interval=100", "learner_log_interval=100", "save_git_info=False",
               f"local_results_path={tmp_path}"] + extra_args
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.subprocess
def test_main_without_smacv2_prints_the_install_steps_and_fails(tmp_path):
    proc = run_main("qmix", [], tmp_path, pythonpath=None)
    assert proc.returncode != 0
    assert "oxwhirl SMACv2 is not installed" in proc.stderr and "SMACv2 maps" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("alg, extra_args", [
    ("qmix", ["batch_size=4", "buffer_size=16"]),
    ("mazero_cpu", ["num_simulations=2", "sampled_actions=2", "batch_transitions=4", "batch_size_run=2",
                    "env_args.map_name=zerg_3_vs_4"]),
])
def test_main_trains_on_the_fake_smacv2(tmp_path, alg, extra_args):
    proc = run_main(alg, extra_args, tmp_path, pythonpath=FAKE_SMACV2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scenario = "zerg_3_vs_4" if alg == "mazero_cpu" else "protoss_5_vs_5"
    (run_dir,) = sacred_runs(tmp_path, alg, scenario)
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    assert "test_battle_won_mean" in load_json(run_dir, "metrics.json")
