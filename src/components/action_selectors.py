"""Action selectors (key `action_selector`): turn per-agent network outputs into actions.

`select_action(agent_inputs [B, N, A], avail_actions [B, N, A], t_env, test_mode)` -> LongTensor [B, N].
Selectors that explore with an epsilon expose `.epsilon`, which the runner logs.
"""
import torch
from torch.distributions import Categorical

from components.epsilon_schedules import DecayThenFlatSchedule


class EpsilonGreedyActionSelector:
    """Q-values: greedy over available actions, uniform over available actions with probability epsilon."""

    def __init__(self, args):
        self.args = args
        self.schedule = DecayThenFlatSchedule(
            args.epsilon_start, args.epsilon_finish, args.epsilon_anneal_time, decay="linear"
        )
        self.epsilon = self.schedule.eval(0)

    def select_action(self, agent_inputs, avail_actions, t_env, test_mode=False):
        self.epsilon = self.args.evaluation_epsilon if test_mode else self.schedule.eval(t_env)
        masked_q = agent_inputs.clone()
        masked_q[avail_actions == 0] = -float("inf")
        greedy = masked_q.argmax(dim=-1)
        random_actions = Categorical(avail_actions.float()).sample()
        pick_random = torch.rand(greedy.shape, device=greedy.device) < self.epsilon
        return torch.where(pick_random, random_actions, greedy).long()


class MultinomialActionSelector:
    """Probabilities: sample from the policy restricted to available actions; greedy in test if `test_greedy`."""

    def __init__(self, args):
        self.test_greedy = args.test_greedy

    def select_action(self, agent_inputs, avail_actions, t_env, test_mode=False):
        masked_policies = agent_inputs.clone()
        masked_policies[avail_actions == 0] = 0.0
        if test_mode and self.test_greedy:
            return masked_policies.argmax(dim=-1).long()
        return Categorical(masked_policies).sample().long()


class SoftPoliciesSelector:
    """Probabilities already masked by the controller: sample as given; greedy in test if `test_greedy`."""

    def __init__(self, args):
        self.test_greedy = args.test_greedy

    def select_action(self, agent_inputs, avail_actions, t_env, test_mode=False):
        if test_mode and self.test_greedy:
            return agent_inputs.argmax(dim=-1).long()
        return Categorical(agent_inputs).sample().long()


REGISTRY = {
    "epsilon_greedy": EpsilonGreedyActionSelector,
    "multinomial": MultinomialActionSelector,
    "soft_policies": SoftPoliciesSelector,
}
