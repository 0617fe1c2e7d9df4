"""SMAX adapter: SMAC layout, info keys, stats, seeding, vmap batching. Compiled functions are shared per module."""

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from envs.smax_env import SMAXEnv, SMAXVecEnv, available_maps  # noqa: E402

BATCH = 4


@pytest.fixture(scope="module")
def vec_env():
    return SMAXVecEnv(BATCH, map_name="3m", seed=3)


@pytest.fixture(scope="module")
def single_env():
    return SMAXEnv(map_name="3m", seed=3)


def focus_fire(avail_actions):
    """Attack the lowest-index enemy in range, else move east (towards the enemies); dead agents no-op."""
    actions = np.where(avail_actions[..., 0] == 1, 0, 4)
    attack = avail_actions[..., 6:]
    return np.where(attack.any(-1), attack.argmax(-1) + 6, actions)


def run_episode(env, policy):
    """Steps all envs until every one terminated; returns returns, lengths and the final info of each env."""
    env.reset()
    active = np.ones(env.num_envs, dtype=bool)
    returns = np.zeros(env.num_envs)
    lengths = np.zeros(env.num_envs, dtype=int)
    final_infos = [None] * env.num_envs
    while active.any():
        rewards, terminated, infos = env.step(policy(env.get_avail_actions()), active)
        for b in range(env.num_envs):
            assert (infos[b] == {}) == (not active[b])
            if terminated[b]:
                final_infos[b] = infos[b]
        assert np.all(rewards[~active] == 0)
        returns += rewards
        lengths += active
        active &= ~terminated
    return returns, lengths, final_infos


def test_env_info_matches_smac_layout():
    info = SMAXVecEnv(1, map_name="3m").get_env_info()
    assert info == {"state_shape": 72, "obs_shape": 75, "n_actions": 9, "n_agents": 3, "episode_limit": 60}


@pytest.mark.parametrize("map_name, n_agents, n_actions, obs_dim, limit", [
    ("2m_vs_1z", 2, 7, 36, 150),
    ("8m_vs_9m", 8, 15, 218, 120),
    ("3s_vs_4z", 3, 10, 88, 200),
    ("corridor", 6, 30, 387, 400),
    ("smacv2_5_units", 5, 11, 127, 100),
])
def test_extra_maps_and_episode_limits(map_name, n_agents, n_actions, obs_dim, limit):
    info = SMAXVecEnv(1, map_name=map_name).get_env_info()
    assert (info["n_agents"], info["n_actions"], info["obs_shape"], info["episode_limit"]) == (
        n_agents, n_actions, obs_dim, limit)


def test_unknown_map_lists_all_maps():
    with pytest.raises(ValueError) as error:
        SMAXVecEnv(1, map_name="MMM2")
    for name in ("3m", "2s3z", "27m_vs_30m", "2m_vs_1z", "3s_vs_3z", "8m_vs_9m", "smacv2_20_units"):
        assert name in str(error.value)
    assert set(available_maps()) >= {"3m", "8m", "25m", "5m_vs_6m", "10m_vs_11m", "3s5z_vs_3s6z", "6h_vs_8z"}


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="attack_mode"):
        SMAXVecEnv(1, attack_mode="weakest")
    with pytest.raises(ValueError, match="num_envs"):
        SMAXVecEnv(0)
    with pytest.raises(ValueError, match="episode_limit"):
        SMAXVecEnv(1, episode_limit=0)


def test_shapes_and_avail_actions_layout(vec_env):
    vec_env.reset()
    assert vec_env.get_obs().shape == (BATCH, 3, 75) and vec_env.get_obs().dtype == np.float32
    assert vec_env.get_state().shape == (BATCH, 72) and vec_env.get_state().dtype == np.float32
    avail_actions = vec_env.get_avail_actions()
    assert avail_actions.shape == (BATCH, 3, 9)
    # alive at the start: no-op unavailable, stop and all four moves available, enemies out of range
    assert np.all(avail_actions[..., 0] == 0) and np.all(avail_actions[..., 1:6] == 1)
    assert np.all(avail_actions[..., 6:] == 0)
    # world_state positions are divided by the map size
    positions = vec_env.get_state()[:, :60].reshape(BATCH, 6, 10)[..., 1:3]
    assert np.all((positions > 0) & (positions < 1))
    assert vec_env.get_obs().flags.writeable


def test_moves_follow_smac_directions(vec_env):
    vec_env.reset()
    before = vec_env.get_state()[:, 1:3].copy()  # agent 0's (x, y)
    actions = np.ones((BATCH, 3), dtype=np.int64)  # everyone stops...
    actions[:, 0] = [2, 3, 4, 5]  # ...except agent 0: north, south, east, west in envs 0..3
    vec_env.step(actions, np.ones(BATCH, dtype=bool))
    delta = vec_env.get_state()[:, 1:3] - before
    step = 3.15 * 0.5 / 32  # marine speed x 0.5 s, in map fractions
    expected = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]]) * step
    np.testing.assert_allclose(delta, expected, atol=0.3 * step)


def test_dead_agents_can_only_noop_and_wins_are_reported(vec_env):
    returns, lengths, final_infos = run_episode(vec_env, focus_fire)
    assert all(set(info) == {"battle_won", "dead_allies", "dead_enemies", "episode_limit"} for info in final_infos)
    won = np.array([info["battle_won"] for info in final_infos])
    assert won.any() and not won.all(), "seed 3 gives both wins and losses with focus fire"
    for info, episode_return in zip(final_infos, returns):
        if info["battle_won"]:
            assert info["dead_enemies"] == 3 and info["dead_allies"] < 3
            assert episode_return == pytest.approx(20.0, abs=1e-3)  # all damage + win bonus, x reward_scale 10
        else:
            assert info["dead_allies"] == 3 and episode_return < 20.0
    assert np.all(lengths <= 60)
    avail_actions = vec_env.get_avail_actions()
    obs = vec_env.get_obs()
    for b, info in enumerate(final_infos):
        dead = avail_actions[b, :, 0] == 1  # the no-op bit marks dead agents
        assert dead.sum() == info["dead_allies"]
        assert np.all(avail_actions[b, dead] == np.eye(9, dtype=int)[0])
        assert np.all(obs[b, dead] == 0)


def test_stats_count_finished_episodes():
    env = SMAXVecEnv(BATCH, map_name="3m", seed=5)
    _, _, final_infos = run_episode(env, focus_fire)
    _, _, more_infos = run_episode(env, focus_fire)
    infos = final_infos + more_infos
    stats = env.get_stats()
    assert stats["battles_game"] == 2 * BATCH
    assert stats["battles_won"] == sum(info["battle_won"] for info in infos)
    assert stats["timeouts"] == sum(info["episode_limit"] for info in infos)
    assert stats["win_rate"] == pytest.approx(stats["battles_won"] / stats["battles_game"])


def test_invalid_use_gives_clear_errors(vec_env):
    vec_env.reset()
    actions = np.ones((BATCH, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="action 0 is not available"):
        vec_env.step(np.zeros((BATCH, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="action 9 is not available"):
        vec_env.step(np.full((BATCH, 3), 9))
    with pytest.raises(ValueError, match="shape"):
        vec_env.step(actions[:, :2])
    active = np.zeros(BATCH, dtype=bool)
    vec_env.step(np.zeros((BATCH, 3), dtype=np.int64), active)  # inactive envs ignore their actions
    run_episode(vec_env, focus_fire)
    with pytest.raises(RuntimeError, match="after its episode ended"):
        vec_env.step(actions)


def test_batch_member_replays_single_env_with_offset_seed(vec_env):
    """Env i of a batch seeded s is the B=1 env seeded s + i: vmap keeps envs independent."""
    single = SMAXVecEnv(1, map_name="3m", seed=3 + 2)
    vec_env.seed(3)
    vec_env.reset()
    single.reset()
    np.testing.assert_array_equal(vec_env.get_obs()[2], single.get_obs()[0])
    active = np.ones(BATCH, dtype=bool)
    while active[2]:
        actions = focus_fire(vec_env.get_avail_actions())
        rewards, terminated, _ = vec_env.step(actions, active)
        single_rewards, single_terminated, _ = single.step(actions[2:3])
        assert rewards[2] == single_rewards[0] and terminated[2] == single_terminated[0]
        np.testing.assert_array_equal(vec_env.get_state()[2], single.get_state()[0])
        active &= ~terminated
    assert not np.array_equal(vec_env.get_state()[1], vec_env.get_state()[2])


def test_reward_scale():
    scaled, _, _ = run_episode(SMAXVecEnv(BATCH, map_name="3m", seed=7, reward_scale=10.0), focus_fire)
    unscaled, _, _ = run_episode(SMAXVecEnv(BATCH, map_name="3m", seed=7, reward_scale=1.0), focus_fire)
    np.testing.assert_allclose(scaled, 10 * unscaled, rtol=1e-5)


def test_timeout_sets_episode_limit():
    env = SMAXVecEnv(1, map_name="3m", seed=0, episode_limit=4)
    env.reset()
    stop = np.ones((1, 3), dtype=np.int64)
    for _ in range(3):
        _, terminated, infos = env.step(stop)
        assert not terminated[0] and not infos[0]["episode_limit"]
    _, terminated, infos = env.step(stop)
    assert terminated[0] and infos[0]["episode_limit"] and not infos[0]["battle_won"]
    assert env.get_stats()["timeouts"] == 1


def test_single_env_interface(single_env):
    obs, state = single_env.reset()
    assert len(obs) == 3 and obs[0].shape == (75,) and state.shape == (72,)
    avail_actions = single_env.get_avail_actions()
    assert isinstance(avail_actions, list) and avail_actions[0] == [0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert single_env.get_avail_agent_actions(1) == avail_actions[1]
    assert single_env.get_obs_size() == 75 and single_env.get_state_size() == 72
    assert single_env.get_total_actions() == 9 and single_env.episode_limit == 60
    reward, terminated, info = single_env.step([1, 1, 1])
    assert isinstance(reward, float) and isinstance(terminated, bool) and "battle_won" in info


def test_same_seed_same_trajectory(single_env):
    def trajectory():
        single_env.seed(11)
        single_env.reset()
        states = [single_env.get_state().copy()]
        for _ in range(10):  # focus fire on 3m lasts longer than 10 steps
            single_env.step(focus_fire(np.array(single_env.get_avail_actions())))
            states.append(single_env.get_state().copy())
        return np.stack(states)

    first = trajectory()
    np.testing.assert_array_equal(first, trajectory())
    assert single_env.seed() == 11
    single_env.seed(12)
    single_env.reset()
    assert not np.array_equal(first[0], single_env.get_state())


def test_rng_state_restores_the_next_episodes(vec_env):
    """Keys taken between episodes and put into a differently seeded env replay the following episodes exactly
    (what a MAZero checkpoint saves)."""
    vec_env.seed(3)
    run_episode(vec_env, focus_fire)
    keys = vec_env.get_rng_state()
    assert keys.shape == (BATCH, 2) and keys.dtype == np.uint32
    expected = [run_episode(vec_env, focus_fire)[0] for _ in range(2)]
    expected_state = vec_env.get_state().copy()
    other = SMAXVecEnv(BATCH, map_name="3m", seed=99)
    other.reset()
    other.set_rng_state(keys)
    replayed = [run_episode(other, focus_fire)[0] for _ in range(2)]
    np.testing.assert_array_equal(np.stack(replayed), np.stack(expected))
    np.testing.assert_array_equal(other.get_state(), expected_state)
    with pytest.raises(ValueError, match="shape"):
        other.set_rng_state(keys[:1])
