"""Shared builders of the MAZero learner tests: a small replay filled with random episodes, a learner on a fresh
model, fixed batches, and one unroll with its targets (tests/test_mazero_learner.py, test_mazero_device.py,
test_mazero_official_switches.py)."""
from types import SimpleNamespace

import numpy as np
import torch

from components.mazero_replay import MAZeroReplayBuffer, ReplayConfig
from learners.mazero_feed import TrainingFeed
from learners.mazero_learner import LearnerConfig, MAZeroLearner, reanalyse_policy_targets, value_targets
from helpers.mazero_args import SMALL, mazero_args
from mcts.search import MCTSSearch, SearchStats
from modules.mazero.model import MAZeroModel, ModelConfig
from run.mazero_config import build_mazero_config, reanalysis_search_config
from utils.config_record import record_from_config


class RecordingLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t):
        self.stats.setdefault(key, []).append((t, value))


def filled_buffer(args, obs_dim, episodes=4, T=6):
    buf = MAZeroReplayBuffer(record_from_config(ReplayConfig, args, buffer_transitions=200, seed=0), obs_dim)
    g = torch.Generator().manual_seed(0)
    for e in range(episodes):
        search_actions = torch.randint(0, args.n_actions, (T, args.sampled_actions, args.n_agents), generator=g)
        search_actions[:, -1] = -1  # one padded child per step
        buf.add_episode(torch.randn(T + 1, args.n_agents, obs_dim, generator=g),
                        torch.randint(0, args.n_actions, (T, args.n_agents), generator=g),
                        torch.ones(T + 1, args.n_agents, args.n_actions, dtype=torch.bool),
                        torch.rand(T, generator=g), e % 2 == 0,
                        SearchStats(joint_actions=search_actions,
                                    visits=torch.rand(T, args.sampled_actions, generator=g),
                                    q_values=torch.randn(T, args.sampled_actions, generator=g),
                                    network_value=torch.randn(T, generator=g)))
    return buf


def batch_at(buf, rows):
    """The MAZeroBatch of the start rows `rows` (a fixed sample, unit importance weights)."""
    buf.sample = lambda batch_transitions, per_beta: (rows, torch.ones(len(rows)))
    return buf.sample_batch(1.0)


def make_learner(args, obs_dim):
    torch.manual_seed(0)
    model = MAZeroModel(obs_dim, ModelConfig.from_config(args)).eval()
    return MAZeroLearner(SimpleNamespace(agent=model), RecordingLogger(), record_from_config(LearnerConfig, args))


def reanalysis_config(args):
    """The run's ReanalysisConfig (policy targets, their search and workers) of `args`."""
    return build_mazero_config(args).reanalysis


def make_feed(args, buf, learner):
    """The run loop's TrainingFeed over `buf` and `learner`."""
    return TrainingFeed(reanalysis_config(args), buf, learner)


def reanalysis_search(args):
    """A reanalysis search driver like the TrainingFeed's."""
    return MCTSSearch(reanalysis_search_config(args), seed=args.seed + 1)


SMALL_NO_DROPOUT = dict(SMALL, attention_dropout=0.0)  # train-mode unrolls equal the hand computations
ROWS = np.array([0, 3, 7, 12, 20])  # episode 0 (rows 0-6: T = 6) at t = 0 and t = 3; episode 1 at t = 0; ...


def small_setup(**overrides):
    settings = dict(sampled_actions=4, reanalyse_ratio=0.0, batch_transitions=len(ROWS), t_max=1000, unroll_steps=2,
                    td_steps=3, gamma=0.9, use_off_policy_correction=False, learner_log_interval=0, **SMALL_NO_DROPOUT)
    settings.update(overrides)
    args = mazero_args(2, 3, **settings)
    buf = filled_buffer(args, 5)
    learner = make_learner(args, 5)
    with torch.no_grad():  # a target network that differs from the online one
        for p in learner.target_model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return args, buf, learner


def unroll(learner, batch, args):
    with torch.no_grad():
        targets = value_targets(batch, learner.target_model, learner.config)
        policy = reanalyse_policy_targets(batch, learner.target_model, reanalysis_search(args), reanalysis_config(args))
    return targets, policy, learner.unroll_losses(batch, targets, policy)
