"""MAZero's centralised learned model (Liu et al., ICLR 2024, Eq. 4; docs/mazero.md, "Model").

Six functions over N agents with latent size H:
  representation  s^i_0 = h(o^i)                      per agent, shared weights (share_parameters: False = per agent)
  communication   e^{1..N} = e(s^{1..N}, a^{1..N})     transformer over agents (centralised)
  dynamics        s'^i = s^i + g([s^i, onehot(a^i), e^i])   per agent, shared weights (or per agent), residual
  reward          r = R(s'^{1..N}, a^{1..N})           centralised, categorical over a support
  value           v = V(s^{1..N})                       centralised, categorical over a support
  policy          p^i = P(s^i)                          per agent, shared weights (or per agent)
plus the SimSiam projection / prediction heads of the consistency loss.

Every call takes [B, N, ...] tensors and runs all agents and all B roots at once.
"""
import dataclasses
import importlib
import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from config_checks import ConfigValueError, Int
from modules.mazero.action_space import PerAgentActions
from utils.config_record import check_record, record_from_config

try:
    attention_kernel = importlib.import_module("modules.mazero.attention_kernel")
except ImportError as _exc:
    attention_kernel = None
    warnings.warn(f"modules.mazero.attention_kernel is not built ({_exc}); the learner's communication transformer "
                  "runs on torch operations autograd differentiates (the same function, slower). Build it with "
                  "`pip install -e .` or `python setup.py build_ext --inplace`.", RuntimeWarning, stacklevel=2)
N_MAX_KERNEL = 64  # agents attention_kernel's backward takes (its per-query buffer)


def _orthogonal_init(linear, zero=False):
    # Orthogonal weights with gain calculate_gain('relu') and zero biases; `zero` (the prediction heads' output
    # layers) zeroes the weights too, so training starts from a uniform policy and zero value and reward.
    if zero:
        nn.init.zeros_(linear.weight)
    else:
        nn.init.orthogonal_(linear.weight, gain=nn.init.calculate_gain("relu"))
    nn.init.zeros_(linear.bias)


class AgentLinear(nn.Module):
    """N independent linear layers applied in one call: x [..., N, in] -> [..., N, out] with agent i's weights."""

    def __init__(self, n_agents, in_dim, out_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_agents, out_dim, in_dim))
        self.bias = nn.Parameter(torch.empty(n_agents, out_dim))

    def forward(self, x):
        return torch.einsum("...ni,noi->...no", x, self.weight) + self.bias


class AgentLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine transform per agent: x [..., N, dim]."""

    def __init__(self, n_agents, dim):
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.ones(n_agents, dim))
        self.bias = nn.Parameter(torch.zeros(n_agents, dim))

    def forward(self, x):
        return F.layer_norm(x, (self.dim,)) * self.weight + self.bias


def _orthogonal_init_agents(linear, zero=False):
    # Each agent's slice gets _orthogonal_init's initialisation on its own.
    if zero:
        nn.init.zeros_(linear.weight)
    else:
        for weight in linear.weight.data:
            nn.init.orthogonal_(weight, gain=nn.init.calculate_gain("relu"))
    nn.init.zeros_(linear.bias)


class MLP(nn.Module):
    """Stack of Linear -> ReLU -> LayerNorm blocks.

    The output block is also Linear-ReLU-LN unless `value_out`, in which case it is a bare, zero-initialised Linear.
    With `n_agents`, every Linear and LayerNorm holds separate weights per agent (`share_parameters: False`) and the
    input is [..., n_agents, in_dim].
    """

    def __init__(self, in_dim, hidden_dims, out_dim, value_out=False, n_agents=None):
        super().__init__()
        if n_agents is None:
            make_linear, make_norm, init = nn.Linear, nn.LayerNorm, _orthogonal_init
        else:
            def make_linear(d_in, d_out):
                return AgentLinear(n_agents, d_in, d_out)

            def make_norm(d):
                return AgentLayerNorm(n_agents, d)

            init = _orthogonal_init_agents
        layers = []
        dims = [in_dim] + list(hidden_dims)
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            linear = make_linear(d_in, d_out)
            init(linear)
            layers += [linear, nn.ReLU(), make_norm(d_out)]
        out = make_linear(dims[-1], out_dim)
        init(out, zero=value_out)
        layers.append(out)
        if not value_out:
            layers += [nn.ReLU(), make_norm(out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def sinusoidal_table(n_positions, dim):
    """Transformer sinusoidal positional encoding [n_positions, dim], indexed by agent slot."""
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: table[:, 1::2].shape[1]])
    return table


class Communication(nn.Module):
    """e_theta: action-conditioned transformer over the agents (no attention mask: dead agents still attend).

    The weights live in an nn.TransformerEncoder (post-LN layers, ReLU, dropout on the attention weights, after the
    attention and twice in the feed-forward block), so the initialisation and the checkpoint keys are PyTorch's, but
    its forward is `_encoder_layer`: the same function in fewer, larger operations (docs/mazero_perf.md).
    """

    def __init__(self, n_agents, n_actions, latent_dim, n_layers, n_heads, ff_dim, dropout):
        super().__init__()
        self.embed = nn.Linear(latent_dim + n_actions, latent_dim)
        # Built for exactly the env's agent count (the official table stops at 30 agents).
        self.register_buffer("positions", sinusoidal_table(n_agents, latent_dim), persistent=False)
        layer = nn.TransformerEncoderLayer(latent_dim, n_heads, dim_feedforward=ff_dim, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.n_heads = n_heads
        self.dropout = dropout

    def forward(self, latent, actions_onehot):
        x = F.relu(self.embed(torch.cat([latent, actions_onehot], dim=-1))) + self.positions
        layers = self.encoder.layers
        if self.training and self.dropout > 0:
            masks = dropout_masks(x.shape, len(layers), self.n_heads, layers[0].linear1.out_features, self.dropout,
                                  x.dtype, self.positions.device)
        else:
            masks = [None] * len(layers)
        for layer, layer_masks in zip(layers, masks):
            x = _encoder_layer(x, layer, self.n_heads, layer_masks)
        return x


def dropout_masks(shape, n_layers, n_heads, ff_dim, p, dtype, device):
    """Every dropout mask of one Communication call on x of `shape` [B, N, H], in one draw from torch's generator:
    per layer of `n_layers` the keep masks, scaled by 1 / (1 - p), of the attention weights [B, N, N, n_heads], the
    attention output [B, N, H], the feed-forward hidden [B, N, ff_dim] and the feed-forward output [B, N, H]."""
    B, N, H = shape
    shapes = [(B, N, N, n_heads), (B, N, H), (B, N, ff_dim), (B, N, H)]
    sizes = [math.prod(s) for s in shapes]
    if attention_kernel is not None and device.type == "cpu" and dtype in (torch.float32, torch.float64) \
            and not torch.jit.is_tracing():  # a trace would not see the kernel's writes
        # one 63-bit seed from torch's generator, the masks from attention_kernel's counter-based generator
        scaled = torch.empty(n_layers, sum(sizes), dtype=dtype)
        seed = int(torch.randint(0, 2 ** 63 - 1, ()))
        attention_kernel.dropout_masks(scaled.view(-1).numpy(), seed, p)
    else:
        # in place on the uniform draw: two vectorised passes, where `>=` then a cast and a scale would be
        # three allocating ones
        scaled = torch.rand(n_layers, sum(sizes), dtype=dtype, device=device)
        scaled.ge_(p).mul_(1.0 / (1.0 - p))
    return [[part.view(s) for part, s in zip(row.split(sizes), shapes)] for row in scaled.unbind(0)]


def _layer_weights(layer):
    """The twelve parameters of a post-LN, ReLU nn.TransformerEncoderLayer, in the order `_layer_forward` takes."""
    attention = layer.self_attn
    return (attention.in_proj_weight, attention.in_proj_bias, attention.out_proj.weight, attention.out_proj.bias,
            layer.norm1.weight, layer.norm1.bias, layer.linear1.weight, layer.linear1.bias, layer.linear2.weight,
            layer.linear2.bias, layer.norm2.weight, layer.norm2.bias)


def _attention_torch(qkv, mask):
    """The attention core in torch operations: qkv [B, N, 3, heads, d], mask [B, N, N, heads] or None ->
    (softmax weights [B, N_q, N_k, heads], attended [B, N, heads, d]).

    Broadcast products summed over the head width and over the keys: a few elementwise kernels where batched
    matmuls would be B x heads GEMMs of N x d x N each. The search's path (it is traceable) and the reference of
    attention_kernel, which the gradient path uses."""
    q, k, v = qkv.unbind(2)
    weights = torch.softmax((q.unsqueeze(2) * k.unsqueeze(1)).sum(-1).mul_(q.shape[-1] ** -0.5), dim=2)
    dropped = weights if mask is None else weights * mask
    return weights, (dropped.unsqueeze(-1) * v.unsqueeze(1)).sum(2)


def _attention_compiled(qkv, mask):
    """_attention_torch by attention_kernel (inputs without grad, on the CPU)."""
    B, N, _, n_heads, d = qkv.shape
    weights = qkv.new_empty(B, N, N, n_heads)
    attended = qkv.new_empty(B, N, n_heads, d)
    attention_kernel.attention_forward(qkv.numpy(), (weights if mask is None else mask).numpy(), mask is not None,
                                       d ** -0.5, weights.numpy(), attended.numpy())
    return weights, attended


def _attention_compiled_backward(grad, qkv, weights, mask):
    """Gradient of qkv [B, N, 3, heads, d] from that of `attended` [B, N, heads, d], by attention_kernel."""
    grad_qkv = torch.empty_like(qkv)
    attention_kernel.attention_backward(grad.numpy(), qkv.numpy(), weights.numpy(),
                                        (weights if mask is None else mask).numpy(), mask is not None,
                                        qkv.shape[-1] ** -0.5, grad_qkv.numpy())
    return grad_qkv


def _layer_forward(x, weights, n_heads, eps, masks, attention=_attention_torch):
    """nn.TransformerEncoderLayer's function (post-LN, ReLU) on x [B, N, H], with `masks` from
    `dropout_masks` or None, and the attention core `attention`; returns (output [B, N, H], what
    `_layer_backward` needs)."""
    w_in, b_in, w_out, b_out, g1, beta1, w1, b1, w2, b2, g2, beta2 = weights
    B, N, H = x.shape
    x = x.reshape(B * N, H)
    qkv = torch.addmm(b_in, x, w_in.t()).view(B, N, 3, n_heads, H // n_heads)
    softmax, attended = attention(qkv, None if masks is None else masks[0])
    attended = attended.view(B * N, H)
    out = torch.addmm(b_out, attended, w_out.t())
    if masks is not None:
        out.mul_(masks[1].view(B * N, H))
    residual1 = out.add_(x)
    x1, mean1, rstd1 = torch.native_layer_norm(residual1, (H,), g1, beta1, eps)
    hidden = torch.addmm(b1, x1, w1.t()).relu_()
    hidden_dropped = hidden if masks is None else hidden * masks[2].view(B * N, -1)
    out = torch.addmm(b2, hidden_dropped, w2.t())
    if masks is not None:
        out.mul_(masks[3].view(B * N, H))
    residual2 = out.add_(x1)
    y, mean2, rstd2 = torch.native_layer_norm(residual2, (H,), g2, beta2, eps)
    saved = (x, qkv, softmax, attended, residual1, mean1, rstd1, x1, hidden, hidden_dropped, residual2, mean2, rstd2)
    return y.view(B, N, H), saved


def _layer_backward(grad, weights, saved, masks):
    """Gradients of `_layer_forward` by hand: (input grad [B, N, H], the twelve weight grads)."""
    w_in, b_in, w_out, b_out, g1, beta1, w1, b1, w2, b2, g2, beta2 = weights
    x, qkv, softmax, attended, residual1, mean1, rstd1, x1, hidden, hidden_dropped, residual2, mean2, rstd2 = saved
    B, N, H = grad.shape
    M = B * N
    g_res2, g_g2, g_beta2 = torch.ops.aten.native_layer_norm_backward(
        grad.reshape(M, H), residual2, (H,), mean2, rstd2, g2, beta2, [True, True, True])
    g_out = g_res2 if masks is None else g_res2 * masks[3].view(M, H)
    g_w2, g_b2 = g_out.t().mm(hidden_dropped), g_out.sum(0)
    g_hidden = g_out.mm(w2)
    if masks is not None:
        g_hidden.mul_(masks[2].view(M, -1))
    g_hidden = torch.ops.aten.threshold_backward(g_hidden, hidden, 0)
    g_w1, g_b1 = g_hidden.t().mm(x1), g_hidden.sum(0)
    g_x1 = torch.addmm(g_res2, g_hidden, w1)
    g_res1, g_g1, g_beta1 = torch.ops.aten.native_layer_norm_backward(
        g_x1, residual1, (H,), mean1, rstd1, g1, beta1, [True, True, True])
    g_out = g_res1 if masks is None else g_res1 * masks[1].view(M, H)
    g_w_out, g_b_out = g_out.t().mm(attended), g_out.sum(0)
    g_attended = g_out.mm(w_out).view(qkv.shape[:2] + qkv.shape[3:])
    g_qkv = _attention_compiled_backward(g_attended, qkv, softmax, None if masks is None else masks[0]).view(M, -1)
    g_w_in, g_b_in = g_qkv.t().mm(x), g_qkv.sum(0)
    g_x = torch.addmm(g_res1, g_qkv, w_in)
    return g_x.view(B, N, H), (g_w_in, g_b_in, g_w_out, g_b_out, g_g1, g_beta1, g_w1, g_b1, g_w2, g_b2, g_g2,
                               g_beta2)


class _EncoderLayer(torch.autograd.Function):
    """One encoder layer as one autograd node: the forward runs its ~20 operations without recording them, the
    attention core by attention_kernel, and the backward is `_layer_backward` (tests/test_mazero_model.py checks
    both against autograd through the torch formulation)."""

    @staticmethod
    def forward(ctx, x, n_heads, eps, masks, *weights):
        y, saved = _layer_forward(x, weights, n_heads, eps, masks, attention=_attention_compiled)
        ctx.save_for_backward(*weights)
        ctx.saved, ctx.masks = saved, masks
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        g_x, g_weights = _layer_backward(grad, ctx.saved_tensors, ctx.saved, ctx.masks)
        return (g_x, None, None, None, *g_weights)


def _kernel_takes(x):
    """Whether attention_kernel can run the layer on x: built, CPU, float32 / float64 throughout, N small enough,
    and no trace recording (TorchScript records torch operations only)."""
    return (attention_kernel is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu") and x.shape[1] <= N_MAX_KERNEL and not torch.jit.is_tracing())


def _encoder_layer(x, layer, n_heads, masks):
    """`layer` (a post-LN, ReLU nn.TransformerEncoderLayer) on x [B, N, H]; `masks` from
    `dropout_masks`, or None without dropout. With grad on the CPU: one _EncoderLayer node; otherwise
    (the search, which traces this, and a model on a GPU) torch operations that autograd differentiates."""
    weights = _layer_weights(layer)
    if torch.is_grad_enabled() and _kernel_takes(x):
        return _EncoderLayer.apply(x, n_heads, layer.norm1.eps, masks, *weights)
    return _layer_forward(x, weights, n_heads, layer.norm1.eps, masks)[0]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a MAZero-family model needs from the run's config; each field is the config key of the same name
    (src/config/algs/mazero.yaml, docs/mazero.md, "Model"), checked by config_checks' rule for that key. Layer
    sizes are stored as tuples, so the record is hashable."""
    n_agents: int  # N, agents (set from the env at run start)
    n_actions: int  # A, actions per agent (set from the env at run start)
    latent_dim: int  # H, per-agent latent size
    representation_hidden: tuple  # hidden sizes of the representation MLP h
    dynamics_hidden: tuple  # hidden sizes of the residual dynamics MLP g
    head_hidden: tuple  # hidden sizes of the reward, value and policy heads
    projection_hidden: int  # hidden size of the SimSiam projection P1
    projection_dim: int  # output size of P1 and of the predictor P2
    predictor_hidden: int  # hidden size of the SimSiam predictor P2
    value_support_size: int  # value head: 2 * value_support_size + 1 bins over [-size, size] after h(x)
    reward_support_size: int  # reward head: 2 * reward_support_size + 1 bins over [-size, size] after h(x)
    feature_norm: bool  # LayerNorm on the raw agent input
    use_communication: bool  # transformer communication e in the dynamics; False = agents' own latent only
    attention_layers: int  # transformer encoder layers of e
    attention_heads: int  # attention heads of e (they split latent_dim)
    attention_ff_dim: int  # feed-forward size of e
    attention_dropout: float  # dropout of e (active in training mode only)
    share_parameters: bool  # one h, g, P for all agents; False = separate weights per agent

    def __post_init__(self):
        for name in ("representation_hidden", "dynamics_hidden", "head_hidden"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        check_record(self, n_agents=Int(1), n_actions=Int(1))
        if self.latent_dim % self.attention_heads != 0:
            raise ConfigValueError(f"ModelConfig: config key 'latent_dim' ({self.latent_dim}) must be divisible by "
                                   f"attention_heads ({self.attention_heads})")

    @classmethod
    def from_config(cls, config, **overrides):
        """The record read by field name from the config namespace `config`, `overrides` replacing values."""
        return record_from_config(cls, config, **overrides)


class MAZeroModel(nn.Module):
    """MAZero model over `input_dim`, the per-agent input size the mazero controller builds."""

    def __init__(self, input_dim, config):
        super().__init__()
        self.n_agents = N = config.n_agents
        self.n_actions = A = config.n_actions
        self.latent_dim = H = config.latent_dim
        self.value_support_size = config.value_support_size
        self.reward_support_size = config.reward_support_size
        self.use_communication = config.use_communication
        self.action_space = PerAgentActions(N, A)  # the policy and the tree work in per-agent actions

        # share_parameters False: separate weights per agent for the local functions h, g and P (and h's feature
        # norm); the centralised e, R, V and the SimSiam heads have no per-agent part.
        local = None if config.share_parameters else N
        if not config.feature_norm:
            self.feature_norm = nn.Identity()
        else:
            self.feature_norm = nn.LayerNorm(input_dim) if local is None else AgentLayerNorm(N, input_dim)
        self.representation = MLP(input_dim, config.representation_hidden, H, n_agents=local)
        if self.use_communication:
            self.communication = Communication(N, A, H, config.attention_layers, config.attention_heads,
                                               config.attention_ff_dim, config.attention_dropout)
        comm_dim = H if self.use_communication else 0
        self.dynamics_net = MLP(H + A + comm_dim, config.dynamics_hidden, H, n_agents=local)
        self.reward_head = MLP(N * (H + A), config.head_hidden, 2 * config.reward_support_size + 1, value_out=True)
        self.value_head = MLP(N * H, config.head_hidden, 2 * config.value_support_size + 1, value_out=True)
        self.policy_head = MLP(H, config.head_hidden, A, value_out=True, n_agents=local)
        self.projection = nn.Sequential(MLP(N * H, [config.projection_hidden], config.projection_dim),
                                        nn.LayerNorm(config.projection_dim))
        self.projection_predictor = MLP(config.projection_dim, [config.predictor_hidden], config.projection_dim)

    # --- the six functions -------------------------------------------------------------------------------------
    def represent(self, obs):
        """[B, N, input] -> latent [B, N, H]."""
        return self.representation(self.feature_norm(obs))

    def dynamics(self, latent, actions):
        """latent [B, N, H], actions [B, N] long -> (next latent [B, N, H], reward logits [B, 2R+1])."""
        actions_onehot = F.one_hot(actions, self.n_actions).to(latent.dtype)
        parts = [latent, actions_onehot]
        if self.use_communication:
            parts.append(self.communication(latent, actions_onehot))
        next_latent = latent + self.dynamics_net(torch.cat(parts, dim=-1))
        # The reward head sees the post-transition latent together with the joint action.
        reward_in = torch.cat([next_latent, actions_onehot], dim=-1).flatten(1)
        return next_latent, self.reward_head(reward_in)

    def predict(self, latent):
        """latent [B, N, H] -> (value logits [B, 2V+1], policy logits [B, N, A])."""
        return self.value_head(latent.flatten(1)), self.policy_head(latent)

    def initial_inference(self, obs):
        latent = self.represent(obs)
        value_logits, policy_logits = self.predict(latent)
        return latent, value_logits, policy_logits

    def recurrent_inference(self, latent, actions):
        next_latent, reward_logits = self.dynamics(latent, actions)
        value_logits, policy_logits = self.predict(next_latent)
        return next_latent, reward_logits, value_logits, policy_logits

    def project(self, latent, with_predictor):
        """SimSiam heads on the joint latent [B, N, H]: P1, then P2 when `with_predictor` (the online branch)."""
        projected = self.projection(latent.flatten(1))
        return self.projection_predictor(projected) if with_predictor else projected
