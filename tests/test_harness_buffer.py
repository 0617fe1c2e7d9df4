"""EpisodeBatch / ReplayBuffer semantics: scheme, groups, preprocess, slicing, ring buffer, extension."""
import numpy as np
import pytest
import torch

from components.episode_buffer import EpisodeBatch, ReplayBuffer
from components.transforms import OneHot

torch.set_num_threads(1)

N_AGENTS, N_ACTIONS, OBS_DIM, STATE_DIM = 3, 5, 4, 6


def make_scheme():
    return {
        "state": {"vshape": STATE_DIM},
        "obs": {"vshape": OBS_DIM, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
        "map_id": {"vshape": (1,), "episode_const": True, "dtype": torch.long},
    }


GROUPS = {"agents": N_AGENTS}
PREPROCESS = {"actions": ("actions_onehot", [OneHot(out_dim=N_ACTIONS)])}


def make_batch(batch_size=2, max_t=4):
    return EpisodeBatch(make_scheme(), GROUPS, batch_size, max_t, preprocess=PREPROCESS)


def test_shapes_dtypes_and_derived_fields():
    batch = make_batch()
    assert batch["obs"].shape == (2, 4, N_AGENTS, OBS_DIM)
    assert batch["state"].shape == (2, 4, STATE_DIM)
    assert batch["actions"].dtype == torch.long
    assert batch["actions_onehot"].shape == (2, 4, N_AGENTS, N_ACTIONS)
    assert batch["actions_onehot"].dtype == torch.float32
    assert batch["filled"].shape == (2, 4, 1) and batch["filled"].dtype == torch.long
    assert batch["map_id"].shape == (2, 1)
    assert batch.scheme["actions_onehot"]["group"] == "agents"


def test_update_marks_filled_and_runs_preprocess():
    batch = make_batch()
    obs = np.arange(N_AGENTS * OBS_DIM, dtype=np.float32).reshape(1, N_AGENTS, OBS_DIM)
    batch.update({"obs": obs}, bs=[1], ts=2)
    assert torch.equal(batch["obs"][1, 2], torch.from_numpy(obs[0]))
    assert batch["filled"][:, :, 0].tolist() == [[0, 0, 0, 0], [0, 0, 1, 0]]

    batch.update({"actions": torch.tensor([[4, 0, 2]])}, bs=[1], ts=2, mark_filled=False)
    assert batch["actions"][1, 2, :, 0].tolist() == [4, 0, 2]
    assert batch["actions_onehot"][1, 2].argmax(-1).tolist() == [4, 0, 2]
    assert batch["actions_onehot"][1, 2].sum().item() == N_AGENTS
    assert batch["filled"].sum().item() == 1

    batch.update({"map_id": [[7], [9]]})
    assert batch["map_id"][:, 0].tolist() == [7, 9]


def test_update_rejects_bad_shapes_and_unknown_fields():
    batch = make_batch()
    with pytest.raises(ValueError, match="do not fit"):
        batch.update({"obs": np.zeros((1, N_AGENTS, OBS_DIM + 1))}, bs=[0], ts=0)
    with pytest.raises(KeyError, match="not a field"):
        batch.update({"nope": [1.0]}, bs=[0], ts=0)
    with pytest.raises(TypeError):
        batch.update({"reward": [[1.0]]}, bs=[0], ts=[0, 1])


def test_slicing_and_field_selection_share_storage():
    batch = make_batch(batch_size=3, max_t=5)
    batch.update({"reward": [[1.0], [2.0], [3.0]]}, ts=1)
    sub = batch[[2, 0]]
    assert sub.batch_size == 2 and sub["reward"][:, 1, 0].tolist() == [3.0, 1.0]
    head = batch[:, :2]
    assert head.max_seq_length == 2 and head["filled"][:, :, 0].tolist() == [[0, 1]] * 3
    fields = batch[("reward", "obs")]
    assert set(fields.data.transition_data) == {"reward", "obs", "filled"}
    fields["reward"][0, 0, 0] = 5.0  # a field view, not a copy
    assert batch["reward"][0, 0, 0].item() == 5.0
    assert batch.max_t_filled() == 1
    batch.update({"reward": [[0.0]]}, bs=[1], ts=0)
    assert batch.max_t_filled() == 2  # the number of filled steps of the longest episode


def test_extend_adds_zero_fields():
    batch = make_batch()
    batch.extend({"search_visits": {"vshape": (7,)}, "probs": {"vshape": (N_ACTIONS,), "group": "agents"}})
    assert batch["search_visits"].shape == (2, 4, 7)
    assert batch["probs"].shape == (2, 4, N_AGENTS, N_ACTIONS)
    with pytest.raises(ValueError, match="already exists"):
        batch.extend({"obs": {"vshape": 1}})


def test_reserved_filled_is_rejected():
    with pytest.raises(ValueError, match="reserved"):
        EpisodeBatch({"filled": {"vshape": 1}}, GROUPS, 1, 2)


def test_replay_buffer_wraps_around_and_samples_without_replacement():
    buffer = ReplayBuffer(make_scheme(), GROUPS, buffer_size=5, max_seq_length=4, preprocess=PREPROCESS)
    for episode_id in range(4):  # 4 batches of 2 episodes -> 8 episodes into 5 slots
        batch = make_batch()
        batch.update({"reward": [[10.0 * episode_id], [10.0 * episode_id + 1]], "actions": [[[1]] * 3] * 2}, ts=0)
        buffer.insert_episode_batch(batch)
    assert buffer.episodes_in_buffer == 5
    assert buffer.buffer_index == 8 % 5
    # slots hold episodes 5, 6, 7 | 3, 4 after the wrap (episode e has reward 10 * (e // 2) + e % 2)
    assert buffer["reward"][:, 0, 0].tolist() == [21.0, 30.0, 31.0, 11.0, 20.0]
    assert buffer["actions_onehot"][:, 0, :, 1].sum().item() == 5 * N_AGENTS
    assert buffer.can_sample(5) and not ReplayBuffer(make_scheme(), GROUPS, 5, 4).can_sample(1)
    sample = buffer.sample(4)
    rewards = sample["reward"][:, 0, 0].tolist()
    assert len(set(rewards)) == 4 and set(rewards) <= {21.0, 30.0, 31.0, 11.0, 20.0}
    with pytest.raises(ValueError, match="asked for"):
        buffer.sample(6)
