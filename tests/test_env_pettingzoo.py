"""PettingZoo parallel envs through gymma's pz- keys (MPE from the mpe2 package): shapes, masks, episode ends,
seeding, per-agent rewards, bad keys, and QMIX / MAPPO / MAZero runs on simple_spread with tiny budgets."""
import numpy as np
import pytest

from envs.gymma import GymmaWrapper
from envs.pettingzoo_env import module_name
from helpers.harness_helpers import load_json, run_main, sacred_runs

SPREAD = "pz-mpe-simple-spread-v3"


def random_episode(env, rng):
    env.reset()
    rewards, terminated, info = [], False, {}
    while not terminated:
        actions = [rng.choice(np.flatnonzero(avail_actions)) for avail_actions in env.get_avail_actions()]
        reward, terminated, info = env.step(actions)
        rewards.append(reward)
    return rewards, info


def test_key_names_the_module():
    assert module_name(SPREAD) == "mpe2.simple_spread_v3"
    assert module_name("pz-mpe-simple-speaker-listener-v4") == "mpe2.simple_speaker_listener_v4"
    assert module_name("pz-butterfly-pistonball-v6") == "pettingzoo.butterfly.pistonball_v6"


@pytest.mark.parametrize("key, n_agents, obs_dim, n_actions, agent_actions", [
    (SPREAD, 3, 18, 5, [5, 5, 5]),
    ("pz-mpe-simple-adversary-v3", 3, 10, 5, [5, 5, 5]),
    ("pz-mpe-simple-tag-v3", 4, 16, 5, [5, 5, 5, 5]),
    ("pz-mpe-simple-speaker-listener-v4", 2, 11, 5, [3, 5]),
    ("pz-mpe-simple-world-comm-v3", 6, 34, 20, [20, 5, 5, 5, 5, 5]),
])
def test_mpe_shapes_and_masks(key, n_agents, obs_dim, n_actions, agent_actions):
    env = GymmaWrapper(key=key, time_limit=25, seed=0)
    assert env.get_env_info() == {"state_shape": n_agents * obs_dim, "obs_shape": obs_dim, "n_actions": n_actions,
                                  "n_agents": n_agents, "episode_limit": 25}
    obs, state = env.reset()
    assert len(obs) == n_agents and obs[0].shape == (obs_dim,)
    np.testing.assert_array_equal(state, np.concatenate(obs))
    assert [sum(avail_actions) for avail_actions in env.get_avail_actions()] == agent_actions
    env.close()


def test_episode_ends_at_the_smaller_limit_as_a_time_out():
    short = GymmaWrapper(key=SPREAD, time_limit=7, seed=0)
    rewards, info = random_episode(short, np.random.default_rng(0))
    assert len(rewards) == 7 and info["episode_limit"] is True
    own_limit = GymmaWrapper(key=SPREAD, time_limit=40, seed=0, max_cycles=12)  # MPE's own step limit
    rewards, info = random_episode(own_limit, np.random.default_rng(0))
    assert len(rewards) == 12 and info["episode_limit"] is True


def test_seed_and_per_agent_rewards():
    team = GymmaWrapper(key=SPREAD, time_limit=25, seed=5)
    agents = GymmaWrapper(key=SPREAD, time_limit=25, seed=5, common_reward=False)
    other_seed = GymmaWrapper(key=SPREAD, time_limit=25, seed=6)
    team_rewards, _ = random_episode(team, np.random.default_rng(1))
    agent_rewards, _ = random_episode(agents, np.random.default_rng(1))
    other_rewards, _ = random_episode(other_seed, np.random.default_rng(1))
    agent_rewards = np.array(agent_rewards)
    assert agent_rewards.shape == (25, 3) and agent_rewards.dtype == np.float32
    np.testing.assert_allclose(agent_rewards.sum(1), team_rewards, rtol=1e-5)
    assert not np.allclose(team_rewards, other_rewards)


def test_bad_keys():
    with pytest.raises(ValueError, match="must read pz-LIBRARY-ENV"):
        GymmaWrapper(key="pz-mpe")
    with pytest.raises(ValueError, match="cannot import mpe2.simple_nothing_v3.*MPE keys are .*simple-spread-v3"):
        GymmaWrapper(key="pz-mpe-simple-nothing-v3")
    with pytest.raises(ValueError, match="Discrete action spaces only"):
        GymmaWrapper(key=SPREAD, continuous_actions=True)


@pytest.mark.subprocess
@pytest.mark.parametrize("alg, budget", [
    ("qmix", ["batch_size=4"]),
    ("mappo", ["batch_size_run=2", "batch_size=2", "buffer_size=2", "epochs=2"]),
    ("mazero_cpu", ["num_simulations=2", "sampled_actions=2", "batch_transitions=8", "batch_size_run=2"]),
])
def test_algorithms_run_on_simple_spread(tmp_path, alg, budget):
    run_main([f"--config={alg}", "--env-config=gymma", "with", f"env_args.key={SPREAD}", "env_args.time_limit=25",
              "t_max=100", "test_interval=50", "test_nepisode=2", "log_interval=50", "runner_log_interval=50",
              "learner_log_interval=50", "save_git_info=False"] + budget, tmp_path)
    (run_dir,) = sacred_runs(tmp_path, alg, SPREAD)  # each of these configs has name = its file name
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    metrics = load_json(run_dir, "metrics.json")
    assert metrics["test_return_mean"]["steps"][-1] >= 100
    assert all(-1000 < value < 0 for value in metrics["test_return_mean"]["values"]), "MPE spread rewards are negative"
