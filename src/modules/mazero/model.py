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
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.mazero.action_space import PerAgentActions


def _orthogonal_init(linear, zero=False):
    # Official init: orthogonal weights with gain calculate_gain('relu'), zero biases; prediction heads'
    # output layers are zero (uniform policy, zero value / reward at the start).
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
    # Each agent's slice gets the official init on its own.
    if zero:
        nn.init.zeros_(linear.weight)
    else:
        for weight in linear.weight.data:
            nn.init.orthogonal_(weight, gain=nn.init.calculate_gain("relu"))
    nn.init.zeros_(linear.bias)


class MLP(nn.Module):
    """Stack of Linear -> ReLU -> LayerNorm blocks (the official `mlp`).

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
    """e_theta: action-conditioned transformer over the agents (no attention mask: dead agents still attend)."""

    def __init__(self, n_agents, n_actions, latent_dim, n_layers, n_heads, ff_dim, dropout):
        super().__init__()
        self.embed = nn.Linear(latent_dim + n_actions, latent_dim)
        # Built for exactly the env's agent count (the official table stops at 30 agents).
        self.register_buffer("positions", sinusoidal_table(n_agents, latent_dim), persistent=False)
        layer = nn.TransformerEncoderLayer(latent_dim, n_heads, dim_feedforward=ff_dim, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, latent, actions_onehot):
        x = F.relu(self.embed(torch.cat([latent, actions_onehot], dim=-1))) + self.positions
        return self.encoder(x)


class MAZeroModel(nn.Module):
    """MAZero model. `input_shape` is the per-agent input size built by the mazero controller."""

    def __init__(self, input_shape, args):
        super().__init__()
        if args.latent_dim % args.attention_heads != 0:
            raise ValueError(f"latent_dim ({args.latent_dim}) must be divisible by attention_heads "
                             f"({args.attention_heads})")
        self.n_agents = args.n_agents
        self.n_actions = args.n_actions
        self.latent_dim = H = args.latent_dim
        self.value_support_size = args.value_support_size
        self.reward_support_size = args.reward_support_size
        self.use_communication = args.use_communication
        N, A = self.n_agents, self.n_actions
        self.action_space = PerAgentActions(N, A)  # the policy and the tree work in per-agent actions

        # share_parameters False: separate weights per agent for the local functions h, g and P (and h's feature
        # norm); the centralised e, R, V and the SimSiam heads have no per-agent part.
        local = None if args.share_parameters else N
        # "feature norm": LayerNorm over the raw observation (on for SMAC, off for the matrix game)
        if not args.feature_norm:
            self.feature_norm = nn.Identity()
        else:
            self.feature_norm = nn.LayerNorm(input_shape) if local is None else AgentLayerNorm(N, input_shape)
        self.representation = MLP(input_shape, args.representation_hidden, H, n_agents=local)
        if self.use_communication:
            self.communication = Communication(N, A, H, args.attention_layers, args.attention_heads,
                                               args.attention_ff_dim, args.attention_dropout)
        comm_dim = H if self.use_communication else 0
        self.dynamics_net = MLP(H + A + comm_dim, args.dynamics_hidden, H, n_agents=local)
        self.reward_head = MLP(N * (H + A), args.head_hidden, 2 * args.reward_support_size + 1, value_out=True)
        self.value_head = MLP(N * H, args.head_hidden, 2 * args.value_support_size + 1, value_out=True)
        self.policy_head = MLP(H, args.head_hidden, A, value_out=True, n_agents=local)
        self.projection = nn.Sequential(MLP(N * H, [args.projection_hidden], args.projection_dim),
                                        nn.LayerNorm(args.projection_dim))
        self.projection_predictor = MLP(args.projection_dim, [args.predictor_hidden], args.projection_dim)

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
        # The reward head sees the post-transition latent together with the action (official code).
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
