"""The action space a MAZero-family model's policy and the search tree work in, and its map to env actions.

The env, the controller, the replay and the model's `dynamics` speak per-agent actions [..., N] (one of A per agent).
The policy head and the tree (`mcts.SampledTrees(n_agents, n_actions)`) work in the model's own action space:
  PerAgentActions  MAZero: N factors of A actions, the identity map;
  JointActions     the flat baseline: one factor of A^N joint actions, index = sum_i a^i A^(N-1-i) (agent 0 most
                   significant, so the tree's lexicographic child order is the index order).
-1 (the padding of unused root-child slots) maps to -1 both ways.
"""
import torch


class PerAgentActions:
    """N independent factors of A actions each: the tree and the policy see the per-agent actions as they are."""

    def __init__(self, n_agents, n_actions):
        self.n_factors = n_agents  # the tree's n_agents
        self.factor_size = n_actions  # the tree's n_actions

    def encode(self, actions):
        """Per-agent actions [..., N] -> actions in this space [..., n_factors]."""
        return actions

    def decode(self, actions):
        """Actions in this space [..., n_factors] -> per-agent actions [..., N]."""
        return actions

    def encode_avail_actions(self, avail_actions):
        """Per-agent avail_actions [B, N, A] bool -> the availability mask of this space [B, n_factors, factor_size]."""
        return avail_actions


class JointActions:
    """One factor over the A^N joint actions."""

    def __init__(self, n_agents, n_actions):
        self.n_agents = n_agents
        self.n_actions = n_actions
        self.n_factors = 1
        self.factor_size = n_actions ** n_agents
        # place value of each agent's action in the joint index, agent 0 most significant
        self.place = n_actions ** torch.arange(n_agents - 1, -1, -1)

    def encode(self, actions):
        actions = torch.as_tensor(actions)
        index = (actions.clamp(min=0) * self.place.to(actions.device)).sum(-1, keepdim=True)
        return torch.where((actions < 0).any(-1, keepdim=True), torch.full_like(index, -1), index)

    def decode(self, actions):
        actions = torch.as_tensor(actions)
        per_agent = torch.div(actions.clamp(min=0), self.place.to(actions.device),
                              rounding_mode="floor") % self.n_actions
        return torch.where(actions < 0, torch.full_like(per_agent, -1), per_agent)

    def encode_avail_actions(self, avail_actions):
        """A joint action is available iff every agent's part is: the outer product of the per-agent masks."""
        avail_actions = torch.as_tensor(avail_actions).bool()
        joint = avail_actions[:, 0]
        for i in range(1, self.n_agents):
            joint = (joint.unsqueeze(-1) & avail_actions[:, i].unsqueeze(1)).flatten(1)
        return joint.unsqueeze(1)
