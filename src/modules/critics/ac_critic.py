"""IPPO's decentralised value critic: V(own observation, agent id) for each agent (one network shared by all)."""
import torch
import torch.nn as nn

from modules.critics.value_net import ValueNet, agent_ids


class ACCritic(nn.Module):
    def __init__(self, scheme, args):
        super().__init__()
        self.n_agents = args.n_agents
        self.net = ValueNet(scheme["obs"]["vshape"] + self.n_agents, args)

    def forward(self, batch):
        """Values [B, T, N] of every step of `batch`."""
        return self.net(torch.cat([batch["obs"], agent_ids(batch, self.n_agents)], dim=-1))
