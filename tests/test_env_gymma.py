"""gymma wrapper on lbforaging and rware: shapes, masks, team reward, time limit, seeding, bad input."""

import os

import numpy as np
import pytest
import yaml

from envs.gymma import GymmaWrapper

LBF = "lbforaging:Foraging-8x8-2p-3f-v3"
RWARE = "rware:rware-tiny-2ag-v2"
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "config", "envs")


def random_episode(env, rng):
    env.reset()
    rewards, length, terminated, info = [], 0, False, {}
    while not terminated:
        actions = [rng.choice(np.flatnonzero(avail_actions)) for avail_actions in env.get_avail_actions()]
        reward, terminated, info = env.step(actions)
        rewards.append(reward)
        length += 1
    return rewards, length, info


@pytest.mark.parametrize("key, n_agents, obs_dim, n_actions", [(LBF, 2, 15, 6), (RWARE, 2, 71, 5)])
def test_shapes_and_masks(key, n_agents, obs_dim, n_actions):
    env = GymmaWrapper(key=key, time_limit=25, seed=1)
    assert env.get_env_info() == {"state_shape": n_agents * obs_dim, "obs_shape": obs_dim, "n_actions": n_actions,
                                  "n_agents": n_agents, "episode_limit": 25}
    obs, state = env.reset()
    assert len(obs) == n_agents and obs[0].shape == (obs_dim,) and obs[0].dtype == np.float32
    np.testing.assert_array_equal(state, np.concatenate(obs))
    assert env.get_avail_actions() == [[1] * n_actions] * n_agents
    env.close()


def test_time_limit_truncation_sets_episode_limit():
    env = GymmaWrapper(key=RWARE, time_limit=7, seed=0)  # rware's own limit is 500 steps
    _, length, info = random_episode(env, np.random.default_rng(0))
    assert length == 7 and info["episode_limit"] is True


def test_team_reward_sums_agent_rewards():
    """lbforaging gives per-agent rewards; the team reward is their sum (or mean), identical trajectories."""
    summed = GymmaWrapper(key=LBF, time_limit=50, seed=4)
    averaged = GymmaWrapper(key=LBF, time_limit=50, seed=4, reward_scalarisation="mean")
    rng_sum, rng_mean = np.random.default_rng(2), np.random.default_rng(2)
    total_sum = total_mean = 0.0
    for _ in range(10):
        rewards_sum, _, _ = random_episode(summed, rng_sum)
        rewards_mean, _, _ = random_episode(averaged, rng_mean)
        np.testing.assert_allclose(rewards_sum, 2 * np.array(rewards_mean))
        total_sum += sum(rewards_sum)
        total_mean += sum(rewards_mean)
    assert total_sum > 0, "random agents on 8x8-2p-3f collect some food in 10 episodes"


def test_seed_makes_episodes_reproducible():
    def observations(seed):
        env = GymmaWrapper(key=LBF, time_limit=50, seed=seed)
        rng = np.random.default_rng(0)
        episodes = []
        for _ in range(2):
            obs, _ = env.reset()
            trace = [np.stack(obs)]
            terminated = False
            while not terminated:
                _, terminated, _ = env.step([rng.integers(6) for _ in range(2)])
                trace.append(np.stack(env.get_obs()))
            episodes.append(np.stack(trace))
        return episodes

    first, again, other = observations(3), observations(3), observations(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[0][0], first[1][0]), "the second episode continues the random stream"


def test_bad_input():
    with pytest.raises(ValueError, match="needs env_args.key"):
        GymmaWrapper(key=None)
    with pytest.raises(ValueError, match="pretrained_wrapper"):
        GymmaWrapper(key=LBF, pretrained_wrapper="PretrainedTag")
    with pytest.raises(ValueError, match="could not make"):
        GymmaWrapper(key="lbforaging:NoSuchEnv-v0")
    with pytest.raises(ValueError, match="reward_scalarisation"):
        GymmaWrapper(key=LBF, reward_scalarisation="max")
    with pytest.raises(ValueError, match="time_limit"):
        GymmaWrapper(key=LBF, time_limit=0)
    with pytest.raises(ValueError, match="Discrete action spaces only|Tuple observation"):
        GymmaWrapper(key="CartPole-v1")


def test_yaml_keys_are_wrapper_arguments():
    with open(os.path.join(CONFIG, "gymma.yaml")) as f:
        config = yaml.safe_load(f)
    env_args = dict(config["env_args"], key=LBF)
    env = GymmaWrapper(**env_args, seed=0)
    assert env.episode_limit == config["env_args"]["time_limit"]
