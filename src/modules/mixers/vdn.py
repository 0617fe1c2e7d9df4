"""VDN mixer: the joint Q is the sum of the agents' chosen Q-values."""
import torch.nn as nn


class VDNMixer(nn.Module):
    def __init__(self, args):
        super().__init__()

    def forward(self, agent_qs, states):
        """agent_qs [B, T, N] -> [B, T, 1]; `states` is unused (kept for the mixer interface)."""
        return agent_qs.sum(dim=2, keepdim=True)
