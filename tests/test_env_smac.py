"""sc2 env against the fake StarCraft2Env (tests/fake_smac), and the install hint when SMAC or SC2 is missing."""

import json
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import yaml

from envs.errors import SC2SetupError
from envs.smac_env import SMACEnv

TESTS = os.path.dirname(os.path.abspath(__file__))
FAKE_SMAC = os.path.join(TESTS, "fake_smac")
SC2_YAML = os.path.join(os.path.dirname(TESTS), "src", "config", "envs", "sc2.yaml")


@pytest.fixture
def fake_smac(fake_package):
    fake_package("smac", FAKE_SMAC)


@pytest.fixture
def sc2_env_args():
    with open(SC2_YAML) as f:
        return yaml.safe_load(f)["env_args"]


# real SMAC's sizes with sc2.yaml's defaults, which the fake StarCraft2Env (tests/fake_smac) must reproduce
SMAC_SHAPES = [
    # map, agents, enemies, limit, n_actions, obs, state (state_last_action False), state (True)
    ("3m", 3, 3, 60, 9, 30, 21, 48),
    ("8m", 8, 8, 120, 14, 80, 56, 168),
    ("2s3z", 5, 5, 120, 11, 80, 65, 120),
    ("3s5z", 8, 8, 150, 14, 128, 104, 216),
    ("5m_vs_6m", 5, 6, 70, 12, 55, 38, 98),
    ("8m_vs_9m", 8, 9, 120, 15, 85, 59, 179),
    ("MMM2", 10, 12, 180, 18, 176, 142, 322),
    ("corridor", 6, 24, 400, 30, 156, 102, 282),
    ("3s_vs_5z", 3, 5, 250, 11, 48, 35, 68),
    ("2s_vs_1sc", 2, 1, 300, 7, 17, 13, 27),
    ("6h_vs_8z", 6, 8, 150, 14, 78, 56, 140),
    ("3s5z_vs_3s6z", 8, 9, 170, 15, 136, 110, 230),
    ("27m_vs_30m", 27, 30, 180, 36, 285, 198, 1170),
]


@pytest.mark.parametrize("map_name, n_agents, n_enemies, limit, n_actions, obs, state, state_last_action",
                         SMAC_SHAPES)
def test_fake_has_smac_shapes(fake_smac, sc2_env_args, map_name, n_agents, n_enemies, limit, n_actions, obs,
                              state, state_last_action):
    env = SMACEnv(**dict(sc2_env_args, map_name=map_name, seed=0))
    info = env.get_env_info()
    assert (info["n_agents"], info["episode_limit"], info["n_actions"], info["obs_shape"], info["state_shape"]) == (
        n_agents, limit, n_actions, obs, state)
    env_obs, env_state = env.reset()
    assert len(env_obs) == n_agents and env_obs[0].shape == (obs,) and env_state.shape == (state,)
    with_last_action = SMACEnv(**dict(sc2_env_args, map_name=map_name, seed=0, state_last_action=True))
    assert with_last_action.get_state_size() == state_last_action == with_last_action.reset()[1].size


def run_episode(env, rng):
    env.reset()
    terminated, length, episode_return = False, 0, 0.0
    while not terminated:
        avail_actions = np.array(env.get_avail_actions())
        dead = avail_actions[:, 0] == 1
        assert np.all(avail_actions[dead] == np.eye(env.get_total_actions(), dtype=int)[0]), "dead agents: no-op only"
        assert np.all(avail_actions[~dead, :2] == [0, 1]), "alive agents: stop, never no-op"
        obs = np.array(env.get_obs())
        assert np.all(obs[dead] == 0)
        reward, terminated, info = env.step([rng.choice(np.flatnonzero(a)) for a in avail_actions])
        episode_return += reward
        length += 1
    return episode_return, length, info


def test_episodes_info_and_stats(fake_smac, sc2_env_args):
    env = SMACEnv(**dict(sc2_env_args, seed=1))
    rng = np.random.default_rng(0)
    infos = []
    for _ in range(20):
        episode_return, length, info = run_episode(env, rng)
        assert set(info) == {"battle_won", "dead_allies", "dead_enemies"}
        assert length <= env.episode_limit
        assert 0 <= episode_return <= 20 + 1e-6, "SMAC scales the best return to reward_scale_rate"
        if info["battle_won"]:
            assert info["dead_enemies"] == 3
        infos.append(info)
    stats = env.get_stats()
    assert stats["battles_game"] == 20
    assert stats["battles_won"] == sum(info["battle_won"] for info in infos) > 0
    assert stats["win_rate"] == pytest.approx(stats["battles_won"] / 20)


def test_unavailable_action_is_refused(fake_smac, sc2_env_args):
    env = SMACEnv(**dict(sc2_env_args, seed=1))
    env.reset()
    with pytest.raises(AssertionError, match="cannot perform action 0"):
        env.step([0, 1, 1])


def test_seed_makes_battles_reproducible(fake_smac, sc2_env_args):
    def play(seed):
        env = SMACEnv(**dict(sc2_env_args, seed=seed))
        return [run_episode(env, np.random.default_rng(5))[:2] for _ in range(3)]

    assert play(7) == play(7)
    assert play(7) != play(8)
    assert SMACEnv(**dict(sc2_env_args, seed=7)).seed() == 7


def test_unknown_map(fake_smac, sc2_env_args):
    with pytest.raises(ValueError, match="Unknown SMAC map 'nomap'"):
        SMACEnv(**dict(sc2_env_args, map_name="nomap"))


def test_hint_when_smac_is_not_installed(missing_package, sc2_env_args):
    missing_package("smac")
    with pytest.raises(SC2SetupError) as error:
        SMACEnv(**sc2_env_args)
    assert "SMAC is not installed" in str(error.value)
    assert all(step in str(error.value) for step in ("4.10", "SMAC_Maps", "requirements-sc2.txt", "SC2PATH",
                                                      "--env-config=smax"))


def test_hint_when_smac3_shadows_smac(monkeypatch, missing_package, sc2_env_args):
    missing_package("smac")
    smac3 = types.ModuleType("smac")
    smac3.__file__ = "/site-packages/smac/__init__.py"
    smac3.__path__ = []  # a package without an `env` submodule, like SMAC3
    monkeypatch.setitem(sys.modules, "smac", smac3)
    with pytest.raises(SC2SetupError, match="SMAC3"):
        SMACEnv(**sc2_env_args)


def test_hint_when_starcraft_cannot_start(fake_smac, monkeypatch, tmp_path, sc2_env_args):
    from smac.env import StarCraft2Env

    def launch_without_sc2(self):
        raise FileNotFoundError("No such file or directory: 'StarCraftII/Versions'")

    monkeypatch.setattr(StarCraft2Env, "reset", launch_without_sc2)
    monkeypatch.setenv("SC2PATH", str(tmp_path / "StarCraftII"))
    with pytest.raises(SC2SetupError) as error:
        SMACEnv(**sc2_env_args)  # launches SC2 at once, so the runner fails before training
    message = str(error.value)
    assert "StarCraft II failed to start (FileNotFoundError" in message
    assert f"SC2PATH={tmp_path / 'StarCraftII'}" in message and "requirements-sc2.txt" in message


def test_setup_error_survives_pickling():
    """Spawn env workers send exceptions to the parent by pickle; the hint must not be doubled or lost."""
    error = pickle.loads(pickle.dumps(SC2SetupError("SC2 is missing.")))
    assert isinstance(error, SC2SetupError)
    assert str(error) == str(SC2SetupError("SC2 is missing.")) and str(error).count("requirements-sc2.txt") == 1


def run_main(extra_args, tmp_path, pythonpath):
    """src/main.py with qmix on sc2 and a tiny budget; PYTHONPATH is exactly `pythonpath` (no fake unless given)."""
    repo = os.path.dirname(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, os.path.join(repo, "src", "main.py"), "--config=qmix", "--env-config=sc2", "with",
               "t_max=300", "test_interval=150", "test_nepisode=2", "batch_size=4", "buffer_size=16",
               "log_interval=150", "runner_log_interval=150", "learner_log_interval=150", "save_git_info=False",
               f"local_results_path={tmp_path}"] + extra_args
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.subprocess
def test_main_without_smac_prints_the_hint_and_fails(tmp_path):
    proc = run_main([], tmp_path, pythonpath=None)
    assert proc.returncode != 0
    assert "oxwhirl SMAC is not installed" in proc.stderr and "requirements-sc2.txt" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.subprocess
def test_main_trains_on_the_fake_starcraft2env(tmp_path):
    proc = run_main([], tmp_path, pythonpath=FAKE_SMAC)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [root for root, _, files in os.walk(tmp_path) if "run.json" in files]
    with open(os.path.join(run_dir, "run.json")) as f:
        assert json.load(f)["status"] == "COMPLETED"
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert "test_battle_won_mean" in metrics and "battle_won_mean" in metrics


@pytest.mark.subprocess
def test_evaluate_with_save_replay_saves_a_replay_through_the_env(tmp_path):
    replay_dir = tmp_path / "replays"
    proc = run_main(["evaluate=True", "save_replay=True", f"env_args.replay_dir={replay_dir}",
                     "env_args.replay_prefix=eval"], tmp_path, pythonpath=FAKE_SMAC)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (replay,) = os.listdir(replay_dir)
    assert replay.startswith("eval_") and replay.endswith(".SC2Replay")
    with open(replay_dir / replay) as f:
        assert f.read() == "fake replay of 2 episodes on 3m\n"  # the test_nepisode=2 evaluation episodes
    assert "Saved replays of the sc2 evaluation episodes" in proc.stderr
