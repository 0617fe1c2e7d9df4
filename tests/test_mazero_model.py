import pytest
import torch

from mazero_args import mazero_args
from modules.mazero.model import MAZeroModel
from utils.value_transform import logits_to_scalar

torch.set_num_threads(1)


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
