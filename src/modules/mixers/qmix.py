"""QMIX mixer (Rashid et al. 2018): monotonic mixing network whose weights come from hypernetworks on the state.

Mixing weights are made non-negative with abs(); the hidden layer uses ELU. `hypernet_layers` 1 = linear
hypernetworks, 2 = one hidden layer of `hypernet_embed` units (EPyMARL's default).
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _hypernet(state_dim, out_dim, layers, embed):
    if layers == 1:
        return nn.Linear(state_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, out_dim))
    raise ValueError(f"hypernet_layers must be 1 or 2, got {layers!r}")


class QMixer(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.n_agents = args.n_agents
        self.state_dim = int(np.prod(args.state_shape))
        self.embed_dim = args.mixing_embed_dim
        self.hyper_w_1 = _hypernet(self.state_dim, self.embed_dim * self.n_agents, args.hypernet_layers,
                                   args.hypernet_embed)
        self.hyper_w_final = _hypernet(self.state_dim, self.embed_dim, args.hypernet_layers, args.hypernet_embed)
        self.hyper_b_1 = nn.Linear(self.state_dim, self.embed_dim)
        # state-dependent bias of the output: a small MLP, as in the QMIX paper
        self.V = nn.Sequential(nn.Linear(self.state_dim, self.embed_dim), nn.ReLU(), nn.Linear(self.embed_dim, 1))

    def forward(self, agent_qs, states):
        """agent_qs [B, T, N], states [B, T, state_dim] -> Q_tot [B, T, 1]."""
        batch_size = agent_qs.size(0)
        states = states.reshape(-1, self.state_dim)
        agent_qs = agent_qs.reshape(-1, 1, self.n_agents)
        w1 = torch.abs(self.hyper_w_1(states)).view(-1, self.n_agents, self.embed_dim)
        b1 = self.hyper_b_1(states).view(-1, 1, self.embed_dim)
        hidden = F.elu(torch.bmm(agent_qs, w1) + b1)
        w_final = torch.abs(self.hyper_w_final(states)).view(-1, self.embed_dim, 1)
        v = self.V(states).view(-1, 1, 1)
        q_tot = torch.bmm(hidden, w_final) + v
        return q_tot.view(batch_size, -1, 1)
