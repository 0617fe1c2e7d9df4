import pytest
import torch

from mazero_args import mazero_args
from modules.mazero.model import MAZeroModel
from utils.value_transform import (logits_to_scalar, scalar_to_two_hot, squash, two_hot_to_scalar, unsquash)

torch.set_num_threads(1)


def test_squash_inverse_round_trip():
    x = torch.tensor([-300.0, -20.0, -1.5, -0.01, 0.0, 0.3, 1.0, 7.25, 200.0], dtype=torch.float64)
    assert torch.allclose(unsquash(squash(x)), x, rtol=1e-9, atol=1e-9)
    # h(3) = sqrt(4) - 1 + 0.003
    assert squash(torch.tensor(3.0)).item() == pytest.approx(1.003)


def test_two_hot_round_trip_and_shape():
    x = torch.tensor([[-20.0, -2.5, 0.0], [0.7, 5.0, 20.0]])
    target = scalar_to_two_hot(x, 5)
    assert target.shape == (2, 3, 11)
    assert torch.allclose(target.sum(-1), torch.ones(2, 3))
    assert ((target > 0).sum(-1) <= 2).all()
    assert torch.allclose(two_hot_to_scalar(target, 5), x, atol=1e-4)


def test_two_hot_by_hand_and_clipping():
    # h(3) = 1.003 -> weight 0.997 on bin +1 (index 6), 0.003 on bin +2 (index 7)
    target = scalar_to_two_hot(torch.tensor([3.0]), 5)[0]
    assert target[6].item() == pytest.approx(0.997, abs=1e-6)
    assert target[7].item() == pytest.approx(0.003, abs=1e-6)
    # Far outside the support: all mass on the end bin.
    assert scalar_to_two_hot(torch.tensor([1e6]), 5)[0, 10].item() == pytest.approx(1.0)
    assert scalar_to_two_hot(torch.tensor([-1e6]), 5)[0, 0].item() == pytest.approx(1.0)


@pytest.mark.parametrize("n_agents,n_actions", [(1, 3), (3, 9), (27, 36)])
def test_model_shapes(n_agents, n_actions):
    args = mazero_args(n_agents, n_actions)
    obs_dim = 17
    model = MAZeroModel(obs_dim, args).eval()
    B, H = 4, args.latent_dim
    obs = torch.randn(B, n_agents, obs_dim)
    latent, value_logits, policy_logits = model.initial_inference(obs)
    assert latent.shape == (B, n_agents, H)
    assert value_logits.shape == (B, 2 * args.value_support_size + 1)
    assert policy_logits.shape == (B, n_agents, n_actions)
    actions = torch.randint(0, n_actions, (B, n_agents))
    nxt, reward_logits, value_logits, policy_logits = model.recurrent_inference(latent, actions)
    assert nxt.shape == (B, n_agents, H)
    assert reward_logits.shape == (B, 2 * args.reward_support_size + 1)
    assert value_logits.shape == (B, 2 * args.value_support_size + 1)
    assert policy_logits.shape == (B, n_agents, n_actions)
    assert model.project(nxt, with_predictor=True).shape == (B, args.projection_dim)
    assert model.project(nxt, with_predictor=False).shape == (B, args.projection_dim)


def test_zero_initialised_heads():
    args = mazero_args(3, 9)
    model = MAZeroModel(10, args).eval()
    latent, value_logits, policy_logits = model.initial_inference(torch.randn(5, 3, 10))
    assert torch.all(policy_logits == 0)  # uniform policy
    assert torch.allclose(logits_to_scalar(value_logits, 5), torch.zeros(5), atol=1e-6)
    _, reward_logits, _, _ = model.recurrent_inference(latent, torch.zeros(5, 3, dtype=torch.long))
    assert torch.all(reward_logits == 0)


def test_communication_mixes_agents_and_switch_removes_it():
    torch.manual_seed(0)
    for use_communication in (True, False):
        model = MAZeroModel(6, mazero_args(3, 4, use_communication=use_communication)).eval()
        latent = model.represent(torch.randn(1, 3, 6))
        a = torch.tensor([[0, 1, 2]])
        b = torch.tensor([[0, 1, 3]])  # only agent 2's action differs
        next_a, _ = model.dynamics(latent, a)
        next_b, _ = model.dynamics(latent, b)
        agent0_changed = not torch.allclose(next_a[0, 0], next_b[0, 0])
        assert agent0_changed == use_communication
        assert hasattr(model, "communication") == use_communication
