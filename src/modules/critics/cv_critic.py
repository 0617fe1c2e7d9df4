"""MAPPO's centralised value critic: V(state, agent id) for each agent (one network shared by all agents)."""
import torch
import torch.nn as nn

from modules.critics.value_net import ValueNet, agent_ids


class CentralVCritic(nn.Module):
    def __init__(self, scheme, args):
        super().__init__()
        self.n_agents = args.n_agents
        self.net = ValueNet(scheme["state"]["vshape"] + self.n_agents, args)

    def forward(self, batch):
        """Values [B, T, N] of every step of `batch`."""
        state = batch["state"].unsqueeze(2).expand(-1, -1, self.n_agents, -1)
        return self.net(torch.cat([state, agent_ids(batch, self.n_agents)], dim=-1))
