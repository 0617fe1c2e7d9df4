import numpy as np
import pytest
import torch

from components.mazero_replay import MAZeroReplayBuffer, ReplayConfig
from mcts.search import SearchStats

N, D, A, KS = 2, 3, 4, 5


def make_buffer(capacity=20, seed=0):
    config = ReplayConfig(buffer_transitions=capacity, batch_transitions=1, unroll_steps=2, td_steps=2,
                          use_off_policy_correction=False, off_policy_age_fraction=0.15, t_max=1000, per_alpha=0.6,
                          sampled_actions=KS, n_agents=N, n_actions=A, seed=seed)
    return MAZeroReplayBuffer(config, D)


def episode(T, first_reward=0.0):
    search_stats = SearchStats(joint_actions=torch.zeros(T, KS, N, dtype=torch.long), visits=torch.ones(T, KS),
                               q_values=torch.zeros(T, KS), network_value=torch.zeros(T))
    return dict(inputs=torch.arange(T + 1, dtype=torch.float32).view(-1, 1, 1).expand(T + 1, N, D).clone(),
                actions=torch.ones(T, N, dtype=torch.long),
                avail_actions=torch.ones(T + 1, N, A, dtype=torch.bool),
                rewards=first_reward + torch.arange(T, dtype=torch.float32),
                terminated=True, search_stats=search_stats)


def test_window_clamps_to_episode_end():
    buf = make_buffer()
    buf.add_episode(**episode(3))  # rows 0..3, row 3 = final obs
    buf.add_episode(**episode(4))  # rows 4..8
    rows, before_end = buf.window(np.array([1, 4]), 5)
    assert rows.tolist() == [[1, 2, 3, 3, 3], [4, 5, 6, 7, 8]]
    assert before_end.tolist() == [[True, True, False, False, False], [True, True, True, True, False]]
    assert buf.steps_to_end(np.array([1, 4])).tolist() == [2, 4]
    # padding past the end: reward 0, action 0, observation = the final frame
    assert buf.rewards[rows[0]].tolist() == [1.0, 2.0, 0.0, 0.0, 0.0]
    assert buf.actions[3].tolist() == [0, 0]
    assert buf.inputs[rows[0, 4], 0, 0].item() == 3.0
    assert buf.num_transitions == 7
    assert buf.transitions_collected == 7
    assert buf.insert_count[4].item() == 3


def test_final_rows_never_sampled_and_new_data_gets_max_priority():
    buf = make_buffer()
    buf.add_episode(**episode(3))
    assert buf.priorities[:4].tolist() == [1.0, 1.0, 1.0, 0.0]
    buf.update_priorities(np.array([0, 1]), np.array([0.5, 4.0]))
    buf.add_episode(**episode(2))
    assert buf.priorities[4:7].tolist() == [4.0, 4.0, 0.0]
    for _ in range(50):
        rows, _ = buf.sample(5, 0.4)
        assert len(set(rows.tolist())) == 5  # without replacement
        assert not set(rows.tolist()) & {3, 6}


def test_importance_weights_by_hand():
    buf = make_buffer()
    buf.add_episode(**episode(2))  # sampleable rows 0, 1
    buf.update_priorities(np.array([0, 1]), np.array([1.0, 4.0]))
    rows, is_weights = buf.sample(2, per_beta=0.5)
    p = np.array([1.0, 4.0]) ** 0.6
    probs = p / p.sum()
    w = (2 * probs) ** -0.5
    w = w / w.max()
    expected = {0: w[0], 1: w[1]}
    for r, weight in zip(rows.tolist(), is_weights.tolist()):
        assert weight == pytest.approx(expected[r], rel=1e-6)


def test_sampling_frequencies_follow_priorities():
    buf = make_buffer(seed=1)
    buf.add_episode(**episode(2))
    buf.update_priorities(np.array([0, 1]), np.array([1.0, 8.0]))
    counts = np.zeros(2)
    for _ in range(4000):
        rows, _ = buf.sample(1, 0.4)
        counts[rows[0]] += 1
    expected = 8.0 ** 0.6 / (1.0 + 8.0 ** 0.6)
    assert counts[1] / counts.sum() == pytest.approx(expected, abs=0.03)


def test_full_buffer_overwrites_oldest_episodes_whole():
    buf = make_buffer(capacity=10)
    buf.add_episode(**episode(4, first_reward=100.0))  # rows 0..4
    buf.add_episode(**episode(3, first_reward=200.0))  # rows 5..8
    buf.add_episode(**episode(3, first_reward=300.0))  # does not fit at 9: wraps to rows 0..3, frees episode 1
    assert buf.num_transitions == 6
    assert buf.priorities[4] == 0.0 and buf.episode_start[4] == -1  # episode 1 removed entirely
    assert buf.rewards[0].item() == 300.0
    rows, _ = buf.sample(6, 0.4)
    assert set(rows.tolist()) == {0, 1, 2, 5, 6, 7}


def test_rejects_episode_larger_than_buffer():
    with pytest.raises(ValueError, match="does not fit"):
        make_buffer(capacity=5).add_episode(**episode(5))


def test_a_huge_replay_allocates_little_and_grows_as_it_fills(monkeypatch):
    import components.mazero_replay as replay_module
    monkeypatch.setattr(replay_module, "INITIAL_ROWS", 8)
    buf = make_buffer(capacity=10 ** 9)  # 10^9 rows preallocated would be ~100 GB
    assert buf.allocated == 8
    episodes = [episode(5, first_reward=10.0 * i) for i in range(4)]
    for ep in episodes:
        buf.add_episode(**ep)  # 6 rows each: 8 -> 16 -> 32 rows
    assert buf.allocated == 32 and buf.rows_used == 24
    for i, ep in enumerate(episodes):  # rows written before a growth survive it
        assert torch.equal(buf.rewards[6 * i:6 * i + 5], ep["rewards"])
        assert torch.equal(buf.inputs[6 * i:6 * i + 6], ep["inputs"])
        assert buf.episode_start[6 * i + 5] == 6 * i
    restored = make_buffer(capacity=10 ** 9)
    restored.load_state_dict(buf.state_dict())  # a resume grows the new replay to the rows saved
    assert restored.allocated >= 24 and torch.equal(restored.rewards[:24], buf.rewards[:24])
    assert np.array_equal(restored.sample(6, 0.4)[0], buf.sample(6, 0.4)[0])


def test_growth_stops_at_buffer_transitions_and_out_of_memory_names_it(monkeypatch):
    import components.mazero_replay as replay_module
    monkeypatch.setattr(replay_module, "INITIAL_ROWS", 4)
    buf = make_buffer(capacity=10)
    buf.add_episode(**episode(4))
    buf.add_episode(**episode(3))
    assert buf.allocated == 10  # doubling 4 -> 8 would not hold row 8; capped at capacity
    assert buf.bytes_per_transition == 4 * N * D + 8 * N + N * A + 4 + 8 + 1 + 8 + (8 * N + 4 + 4 + 4) * KS + 4 + 16

    def no_memory(rows):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    small = make_buffer(capacity=100)
    monkeypatch.setattr(small, "new_storage", no_memory)
    with pytest.raises(MemoryError, match="buffer_transitions=100"):
        small.add_episode(**episode(5))
