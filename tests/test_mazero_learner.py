import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from components.mazero_replay import MAZeroReplayBuffer
from mcts import ptree
from mcts.search import SearchStats
from components.mazero_replay import bootstrap_offsets, off_policy_td_steps
from learners.mazero_learner import (MAZeroLearner, joint_log_probs, n_step_value_targets, policy_target_weights,
                                     reanalyse_policy_targets)
from mazero_args import mazero_args
from modules.mazero.model import MAZeroModel

torch.set_num_threads(1)


class RecordingLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t):
        self.stats.setdefault(key, []).append((t, value))


def test_off_policy_td_steps_shrink():
    age = torch.tensor([0, 14999, 15000, 45000, 10 ** 6])
    assert off_policy_td_steps(age, 5, 15000.0).tolist() == [5, 5, 4, 2, 1]


def test_n_step_targets_terminal_and_timeout_by_hand():
    # One episode of T = 3 transitions, rewards 1, 2, 3; start t = 0; n = 2, K = 2, gamma = 0.5.
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0]])  # K + n = 4 (0 past the end)
    steps_left = torch.tensor([3])
    horizons = bootstrap_offsets(steps_left, torch.tensor([2]), 2)
    assert horizons.tolist() == [[2, 2, 1]]
    boot = torch.tensor([[10.0, 20.0, 20.0]])  # v(o_2), v(o_3), v(o_3)
    z = n_step_value_targets(rewards, boot, horizons, steps_left, torch.tensor([True]), 0.5)
    # z0 = 1 + .5*2 + .25*10; z1 = 2 + .5*3 (o_3 terminal: no bootstrap); z2 = 3
    assert z.tolist() == [[4.5, 3.5, 3.0]]
    z = n_step_value_targets(rewards, boot, horizons, steps_left, torch.tensor([False]), 0.5)
    # time-out: bootstrap from the final observation o_3
    assert z.tolist() == [[4.5, 3.5 + 0.25 * 20, 3.0 + 0.5 * 20]]


def test_n_step_targets_past_the_end_are_zero():
    # start t = 2 of the same episode: one transition left.
    steps_left = torch.tensor([1])
    horizons = bootstrap_offsets(steps_left, torch.tensor([2]), 2)
    assert horizons.tolist() == [[1, 0, 0]]
    rewards = torch.tensor([[3.0, 0.0, 0.0, 0.0]])
    z = n_step_value_targets(rewards, torch.full((1, 3), 7.0), horizons, steps_left, torch.tensor([True]), 0.5)
    assert z.tolist() == [[3.0, 0.0, 0.0]]


def test_awpo_weights_normalisation_clip_and_mask():
    adv = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[True, True, True, False]])
    w = policy_target_weights(adv, mask, "awpo", awpo_alpha=2.0, adv_clip=1.5)
    std = math.sqrt(2.0 / 3.0)
    expected = [math.exp(-1.0 / (std + 1e-5) / 2.0), 1.0, 1.5, 0.0]  # exp(1.2247/2) = 1.845 -> clipped to 1.5
    assert w[0].tolist() == pytest.approx(expected, rel=1e-5)
    bc = policy_target_weights(adv, mask, "bc", awpo_alpha=2.0, adv_clip=1.5)
    assert bc.tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_joint_log_probs_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]]))  # B=1, N=2, A=3
    actions = torch.tensor([[[0, 1], [2, 2], [-1, -1]]])  # K=3, last one padding
    lp = joint_log_probs(logits, actions)
    assert lp[0].tolist() == pytest.approx([math.log(0.5 * 0.6), math.log(0.25 * 0.3), 0.0], rel=1e-5)


def test_value_cross_entropy_by_hand():
    # zero logits = uniform over 11 bins; any two-hot target gives CE = log 11
    ce = MAZeroLearner._ce(torch.zeros(2, 11), torch.tensor([3.0, -1.0]), 5)
    assert ce.tolist() == pytest.approx([math.log(11)] * 2, rel=1e-6)


def _filled_buffer(args, obs_dim, episodes=4, T=6):
    buf = MAZeroReplayBuffer(200, args.n_agents, obs_dim, args.n_actions, args.sampled_actions, args.per_alpha, 0)
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


def _batch_at(buf, rows, args):
    """The MAZeroBatch of the start rows `rows` (a fixed sample, unit importance weights)."""
    buf.sample = lambda batch_size, per_beta: (rows, torch.ones(len(rows)))
    return buf.sample_batch(len(rows), 1.0, args.unroll_steps, args.td_steps)


def _learner(args, obs_dim):
    torch.manual_seed(0)
    model = MAZeroModel(obs_dim, args).eval()
    return MAZeroLearner(SimpleNamespace(agent=model), None, RecordingLogger(), args)


def test_policy_targets_masked_past_episode_end():
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.0, batch_size=8, t_max=1000)
    buf = _filled_buffer(args, 5)
    learner = _learner(args, 5)
    rows = np.array([4, 5])  # rows 4, 5 of episode 0 (T = 6): 2 and 1 steps left
    targets = reanalyse_policy_targets(_batch_at(buf, rows, args), learner.target_model, learner.search, args)
    omega, adv, mask = targets.omega, targets.advantages, targets.mask
    assert mask[0].any(-1).tolist() == [True, True, False, False, False, False]
    assert mask[1].any(-1).tolist() == [True, False, False, False, False, False]
    assert not mask[..., -1].any()  # padded child
    assert torch.allclose(omega.sum(-1)[mask.any(-1)], torch.ones(3))
    assert torch.allclose(adv[0, 0], buf.search.q_values[4] - buf.search.network_value[4])


def test_target_network_lags_one_to_two_intervals():
    obs_dim = 5
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.0, batch_size=8, target_model_interval=2,
                       t_max=1000)
    buf = _filled_buffer(args, obs_dim)
    learner = _learner(args, obs_dim)

    def params(model):
        return torch.cat([p.detach().flatten().clone() for p in model.parameters()])

    history = [params(learner.model)]  # history[u] = online parameters after u updates
    targets = [params(learner.target_model)]
    for _ in range(6):
        learner.train(buf, t_env=0)
        history.append(params(learner.model))
        targets.append(params(learner.target_model))
    assert not torch.equal(history[1], history[0])
    # refresh at u = 2: target <- snapshot of u = 0; at u = 4: <- u = 2; at u = 6: <- u = 4
    for u, source in [(1, 0), (2, 0), (3, 0), (4, 2), (5, 2), (6, 4)]:
        assert torch.equal(targets[u], history[source]), (u, source)


def test_train_logs_losses_and_updates_priorities():
    obs_dim = 5
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.0, batch_size=8, t_max=1000,
                       learner_log_interval=0)
    buf = _filled_buffer(args, obs_dim)
    learner = _learner(args, obs_dim)
    before = buf.priorities.copy()
    learner.train(buf, t_env=10)
    for key in ("loss", "reward_loss", "value_loss", "policy_loss", "consistency_loss", "grad_norm"):
        assert np.isfinite(learner.logger.stats[key][0][1])
    changed = np.flatnonzero(buf.priorities != before)
    assert len(changed) == 8


def test_reanalysis_replaces_stored_targets_for_its_share_of_the_batch():
    args = mazero_args(2, 3, sampled_actions=4, num_simulations=7, reanalyse_ratio=0.5, batch_size=4, t_max=1000)
    buf = _filled_buffer(args, 5)
    learner = _learner(args, 5)
    learner.search.tree_cls = ptree.SampledTrees
    rows = np.array([0, 5, 7, 12])  # first two reanalysed; row 5 has one step left
    window, _ = buf.window(rows, args.unroll_steps + 1)
    targets = reanalyse_policy_targets(_batch_at(buf, rows, args), learner.target_model, learner.search, args)
    omega = targets.omega
    visits = torch.stack([buf.search.visits[window[b]] for b in range(4)])
    # reanalysed roots: fresh visit counts summing to S; past the end and the other half: the stored statistics
    assert learner.search.num_searches == 1
    assert torch.equal(omega[0].sum(-1) > 0, torch.ones(6, dtype=torch.bool))
    stored = visits / visits.sum(-1, keepdim=True).clamp(min=1.0)
    assert torch.allclose(omega[1, 1:], stored[1, 1:])
    assert torch.allclose(omega[2:], stored[2:])
    assert not torch.allclose(omega[0], stored[0])
    assert targets.search_seconds > 0
