from dataclasses import FrozenInstanceError

import pytest
import torch

from config_checks import ConfigValueError
from helpers.mazero_args import mazero_args
import modules.mazero.model as model_module
from modules.mazero.flat_model import FlatMuZeroModel
from modules.mazero.model import (Communication, MAZeroModel, ModelConfig, _encoder_layer, _layer_forward,
                                  _layer_weights, dropout_masks)
from utils.value_transform import logits_to_scalar

torch.set_num_threads(1)


def _model(input_dim, n_agents, n_actions, **overrides):
    return MAZeroModel(input_dim, ModelConfig.from_config(mazero_args(n_agents, n_actions, **overrides)))


@pytest.mark.parametrize("n_agents,n_actions", [(1, 3), (3, 9), (27, 36)])
def test_model_shapes(n_agents, n_actions):
    args = mazero_args(n_agents, n_actions)
    obs_dim = 17
    model = MAZeroModel(obs_dim, ModelConfig.from_config(args)).eval()
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
    model = _model(10, 3, 9).eval()
    latent, value_logits, policy_logits = model.initial_inference(torch.randn(5, 3, 10))
    assert torch.all(policy_logits == 0)  # uniform policy
    assert torch.allclose(logits_to_scalar(value_logits, 5), torch.zeros(5), atol=1e-6)
    _, reward_logits, _, _ = model.recurrent_inference(latent, torch.zeros(5, 3, dtype=torch.long))
    assert torch.all(reward_logits == 0)


def test_communication_mixes_agents_and_switch_removes_it():
    torch.manual_seed(0)
    for use_communication in (True, False):
        model = _model(6, 3, 4, use_communication=use_communication).eval()
        latent = model.represent(torch.randn(1, 3, 6))
        a = torch.tensor([[0, 1, 2]])
        b = torch.tensor([[0, 1, 3]])  # only agent 2's action differs
        next_a, _ = model.dynamics(latent, a)
        next_b, _ = model.dynamics(latent, b)
        agent0_changed = not torch.allclose(next_a[0, 0], next_b[0, 0])
        assert agent0_changed == use_communication
        assert hasattr(model, "communication") == use_communication


def _layer_and_masks(n_agents, n_heads, dropout, batch=4, latent=16, ff=8):
    layer = torch.nn.TransformerEncoderLayer(latent, n_heads, ff, dropout, batch_first=True).double()
    masks = dropout_masks((batch, n_agents, latent), 1, n_heads, ff, dropout, torch.float64,
                          torch.device("cpu"))[0] if dropout else None
    x = torch.randn(batch, n_agents, latent, dtype=torch.float64, requires_grad=True)
    return layer, masks, x


@pytest.mark.parametrize("n_agents,n_heads,dropout", [(3, 4, 0.0), (3, 4, 0.3), (5, 2, 0.3), (1, 1, 0.0)])
def test_encoder_layer_backward_matches_autograd(n_agents, n_heads, dropout):
    # The hand-written backward of the communication's encoder layer against autograd through the same forward.
    torch.manual_seed(0)
    layer, masks, x = _layer_and_masks(n_agents, n_heads, dropout)
    weights = _layer_weights(layer)
    expected_out = _layer_forward(x, weights, n_heads, layer.norm1.eps, masks)[0]
    out = _encoder_layer(x, layer, n_heads, masks)
    assert torch.allclose(out, expected_out, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    expected = torch.autograd.grad(expected_out, (x, *weights), grad_out)
    got = torch.autograd.grad(out, (x, *weights), grad_out)
    for name, e, g in zip(["input", *(n for n, _ in layer.named_parameters())], expected, got):
        assert torch.allclose(g, e, rtol=1e-9, atol=1e-12), name


def test_encoder_layer_is_pytorchs_layer():
    # Without dropout, the same function and gradients as nn.TransformerEncoderLayer's own forward.
    torch.manual_seed(0)
    layer, _, x = _layer_and_masks(3, 4, 0.0)
    expected_out = layer(x)
    out = _encoder_layer(x, layer, 4, None)
    assert torch.allclose(out, expected_out, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(out)
    params = list(layer.parameters())
    for e, g in zip(torch.autograd.grad(expected_out, (x, *params), grad_out),
                    torch.autograd.grad(out, (x, *params), grad_out)):
        assert torch.allclose(g, e, rtol=1e-9, atol=1e-12)


def test_dropout_masks_keep_one_minus_p_scaled_and_follow_the_seed():
    cpu = torch.device("cpu")
    torch.manual_seed(3)
    masks = dropout_masks((512, 3, 16), 3, 4, 8, 0.25, torch.float32, cpu)
    values = torch.cat([m.flatten() for layer in masks for m in layer])
    assert torch.equal(values.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert abs((values > 0).float().mean().item() - 0.75) < 0.01
    assert [tuple(m.shape) for m in masks[0]] == [(512, 3, 3, 4), (512, 3, 16), (512, 3, 8), (512, 3, 16)]
    torch.manual_seed(3)
    again = dropout_masks((512, 3, 16), 3, 4, 8, 0.25, torch.float32, cpu)
    assert all(torch.equal(a, b) for la, lb in zip(masks, again) for a, b in zip(la, lb))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_communication_without_the_kernel_is_the_same_function(monkeypatch, dropout):
    # The path where attention_kernel is not built (torch operations under autograd) against the kernel's path, on
    # the same weights, inputs and dropout masks: outputs and every gradient.
    if model_module.attention_kernel is None:
        pytest.skip("attention_kernel is not built")
    torch.manual_seed(0)
    communication = Communication(3, 4, 16, 2, 4, 8, dropout).train()
    latent = torch.randn(6, 3, 16)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 4, (6, 3)), 4).float()
    masks = dropout_masks((6, 3, 16), 2, 4, 8, dropout, torch.float32, torch.device("cpu"))
    monkeypatch.setattr(model_module, "dropout_masks", lambda *args: masks)
    results = []
    for kernel in (model_module.attention_kernel, None):
        monkeypatch.setattr(model_module, "attention_kernel", kernel)
        x = latent.clone().requires_grad_()
        out = communication(x, onehot)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(),
                                    [x, *communication.parameters()])
        results.append((out, grads))
    (out, grads), (expected_out, expected_grads) = results
    assert torch.allclose(out, expected_out, rtol=1e-5, atol=1e-5)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*torch.jit.trace")
def test_trace_of_the_communication_records_torch_operations():
    # The search traces the model under no_grad: the trace must hold the layer's torch operations and, in train
    # mode, draw its dropout masks with torch (attention_kernel's writes would be invisible to it).
    torch.manual_seed(0)
    communication = Communication(3, 4, 16, 2, 4, 8, 0.1)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 4, (5, 3)), 4).float()
    with torch.no_grad():
        traced = torch.jit.trace(communication.eval(), (torch.randn(5, 3, 16), onehot))
        latent = torch.randn(5, 3, 16)
        assert torch.equal(traced(latent, onehot), communication(latent, onehot))
        traced_train = torch.jit.trace(communication.train(), (torch.randn(5, 3, 16), onehot), check_trace=False)
    assert "aten::rand" in str(traced_train.graph)


def test_model_config_reads_the_config_keys_and_checks_them():
    args = mazero_args(3, 9, representation_hidden=[16, 8])
    config = ModelConfig.from_config(args)
    assert config.representation_hidden == (16, 8) and config.n_agents == 3 and config.latent_dim == args.latent_dim
    assert hash(config) == hash(ModelConfig.from_config(args))  # frozen, lists stored as tuples
    with pytest.raises(FrozenInstanceError):
        config.latent_dim = 8
    with pytest.raises(ConfigValueError, match="'latent_dim' .* must be divisible by attention_heads"):
        ModelConfig.from_config(args, latent_dim=12, attention_heads=8)
    for key, value in (("n_agents", 0), ("head_hidden", [8, 0]), ("attention_dropout", 1.0), ("feature_norm", 1)):
        with pytest.raises(ConfigValueError, match=f"config key '{key}'"):
            ModelConfig.from_config(args, **{key: value})


def test_flat_model_is_the_core_model_with_one_agent_of_joint_actions():
    config = ModelConfig.from_config(mazero_args(2, 3))
    model = FlatMuZeroModel(5, config)
    assert model.core.n_agents == 1 and model.core.n_actions == 9 and not model.core.use_communication
    assert model.core.representation.net[0].in_features == 10  # N = 2 inputs of 5, concatenated
    assert config.n_agents == 2 and config.use_communication  # the caller's record is unchanged
