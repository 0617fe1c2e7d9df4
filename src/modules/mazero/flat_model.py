"""`agent: mazero_flat`: single-agent MuZero over the joint observation and the joint action (the paper's Fig. 6 baseline).

One latent of `latent_dim` for the concatenated observations of all N agents, one policy head over the A^N joint
actions, dynamics, reward and value over that latent and the one-hot joint action: MAZero's model with one agent and
A^N actions (no communication, nothing per agent). It speaks the same interface as MAZeroModel: inputs [B, N, D],
per-agent actions [B, N] in `dynamics`; latents are [B, 1, H] and policy logits [B, 1, A^N], in the space of
`action_space` (JointActions), which the search driver, the learner and the controller map to and from per-agent
actions.
"""
import dataclasses

import torch.nn as nn

from modules.mazero.action_space import JointActions
from modules.mazero.model import MAZeroModel

# Largest joint action space the flat model accepts: one-hot joint actions feed the dynamics and reward networks
# and the policy head has one logit per joint action (4096 = e.g. 8 actions for 4 agents, 9 for 3 agents: 729).
MAX_JOINT_ACTIONS = 4096


class FlatMuZeroModel(nn.Module):
    """`input_dim` is the per-agent input size; `config` (a ModelConfig) describes the env's N agents and A actions,
    and the core MAZeroModel gets it with one agent of A^N actions, no communication."""

    def __init__(self, input_dim, config):
        super().__init__()
        joint_size = config.n_actions ** config.n_agents
        if joint_size > MAX_JOINT_ACTIONS:
            raise ValueError(f"agent: mazero_flat needs one policy output per joint action, and this env has "
                             f"n_actions ** n_agents = {config.n_actions} ** {config.n_agents} = {joint_size} joint "
                             f"actions (limit {MAX_JOINT_ACTIONS}); use agent: mazero for this map")
        self.n_agents = config.n_agents
        self.action_space = JointActions(config.n_agents, config.n_actions)
        single = dataclasses.replace(config, n_agents=1, n_actions=joint_size, use_communication=False,
                                     share_parameters=True)
        self.core = MAZeroModel(self.n_agents * input_dim, single)

    def represent(self, obs):
        """[B, N, D] -> latent [B, 1, H] of the concatenated observations."""
        return self.core.represent(obs.flatten(-2).unsqueeze(-2))

    def dynamics(self, latent, actions):
        """latent [B, 1, H], per-agent actions [B, N] -> (next latent [B, 1, H], reward logits)."""
        return self.core.dynamics(latent, self.action_space.encode(actions))

    def predict(self, latent):
        """latent [B, 1, H] -> (value logits, joint policy logits [B, 1, A^N])."""
        return self.core.predict(latent)

    def initial_inference(self, obs):
        return self.core.initial_inference(obs.flatten(-2).unsqueeze(-2))

    def recurrent_inference(self, latent, actions):
        return self.core.recurrent_inference(latent, self.action_space.encode(actions))

    def project(self, latent, with_predictor):
        return self.core.project(latent, with_predictor)
