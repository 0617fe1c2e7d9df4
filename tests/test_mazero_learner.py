import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mcts import ptree
from components.mazero_replay import bootstrap_offsets, off_policy_td_steps
from learners.mazero_learner import (joint_log_probs, n_step_value_targets, policy_target_weights,
                                     reanalyse_policy_targets, support_cross_entropy, value_targets)
from helpers.mazero_args import mazero_args
from helpers.mazero_learner_helpers import (ROWS, SMALL_NO_DROPOUT, batch_at, filled_buffer, make_feed, make_learner,
                                    reanalysis_config, reanalysis_search, small_setup, unroll)
from utils.value_transform import logits_to_scalar

torch.set_num_threads(1)


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


def test_awpo_root_normalisation_ranks_each_roots_children_alike():
    adv = torch.tensor([[0.1, 0.2, 0.3, 9.0], [10.0, 20.0, 30.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, False], [True, True, False, False]])
    w = policy_target_weights(adv, mask, "awpo", awpo_alpha=2.0, adv_clip=3.0, awpo_advantage_norm="root")
    z = 1.0 / math.sqrt(2.0 / 3.0)  # (0.3 - 0.2) / population std of (0.1, 0.2, 0.3)
    expected = [math.exp(-z / 2.0), 1.0, math.exp(z / 2.0), 0.0]
    assert w[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert w[1].tolist() == pytest.approx(expected, rel=1e-5)  # same ranking, 100x the spread: same weights
    assert w[2].tolist() == [1.0, 1.0, 0.0, 0.0]  # equal children (std under the floor): weight 1, padding 0
    batch = policy_target_weights(adv, mask, "awpo", awpo_alpha=2.0, adv_clip=3.0)
    assert float(batch[0, 2] / batch[0, 0]) < 1.02 < float(w[0, 2] / w[0, 0])  # batch: row 0's spread is lost in row 1's


def test_joint_log_probs_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]]))  # B=1, N=2, A=3
    actions = torch.tensor([[[0, 1], [2, 2], [-1, -1]]])  # K=3, last one padding
    lp = joint_log_probs(logits, actions)
    assert lp[0].tolist() == pytest.approx([math.log(0.5 * 0.6), math.log(0.25 * 0.3), 0.0], rel=1e-5)


def test_value_cross_entropy_by_hand():
    # zero logits = uniform over 11 bins; any two-hot target gives CE = log 11
    ce = support_cross_entropy(torch.zeros(2, 11), torch.tensor([3.0, -1.0]), 5)
    assert ce.tolist() == pytest.approx([math.log(11)] * 2, rel=1e-6)


def test_policy_targets_masked_past_episode_end():
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.0, batch_transitions=8, t_max=1000)
    buf = filled_buffer(args, 5)
    learner = make_learner(args, 5)
    rows = np.array([4, 5])  # rows 4, 5 of episode 0 (T = 6): 2 and 1 steps left
    targets = reanalyse_policy_targets(batch_at(buf, rows), learner.target_model, reanalysis_search(args),
                                       reanalysis_config(args))
    omega, adv, mask = targets.omega, targets.advantages, targets.mask
    assert mask[0].any(-1).tolist() == [True, True, False, False, False, False]
    assert mask[1].any(-1).tolist() == [True, False, False, False, False, False]
    assert not mask[..., -1].any()  # padded child
    assert torch.allclose(omega.sum(-1)[mask.any(-1)], torch.ones(3))
    assert torch.allclose(adv[0, 0], buf.search_stats.q_values[4] - buf.search_stats.network_value[4])


def test_target_network_lags_one_to_two_intervals():
    obs_dim = 5
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.0, batch_transitions=8, target_model_interval=2,
                       t_max=1000)
    buf = filled_buffer(args, obs_dim)
    learner = make_learner(args, obs_dim)

    def params(model):
        return torch.cat([p.detach().flatten().clone() for p in model.parameters()])

    history = [params(learner.model)]  # history[u] = online parameters after u updates
    targets = [params(learner.target_model)]
    feed = make_feed(args, buf, learner)
    for _ in range(6):
        feed.train_step(t_env=0)
        history.append(params(learner.model))
        targets.append(params(learner.target_model))
    assert not torch.equal(history[1], history[0])
    # refresh at u = 2: target <- snapshot of u = 0; at u = 4: <- u = 2; at u = 6: <- u = 4
    for u, source in [(1, 0), (2, 0), (3, 0), (4, 2), (5, 2), (6, 4)]:
        assert torch.equal(targets[u], history[source]), (u, source)


def test_train_logs_losses_and_updates_priorities():
    obs_dim = 5
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.0, batch_transitions=8, t_max=1000,
                       learner_log_interval=0)
    buf = filled_buffer(args, obs_dim)
    learner = make_learner(args, obs_dim)
    before = buf.priorities.copy()
    make_feed(args, buf, learner).train_step(t_env=10)
    for key in ("loss", "reward_loss", "value_loss", "policy_loss", "consistency_loss", "grad_norm"):
        assert np.isfinite(learner.logger.stats[key][0][1])
    changed = np.flatnonzero(buf.priorities != before)
    assert len(changed) == 8


def test_reanalysis_replaces_stored_targets_for_its_share_of_the_batch():
    args = mazero_args(2, 3, sampled_actions=4, num_simulations=7, reanalyse_ratio=0.5, batch_transitions=4, t_max=1000)
    buf = filled_buffer(args, 5)
    learner = make_learner(args, 5)
    search = reanalysis_search(args)
    search.tree_cls = ptree.SampledTrees
    rows = np.array([0, 5, 7, 12])  # first two reanalysed; row 5 has one step left
    window, _ = buf.window(rows, args.unroll_steps + 1)
    targets = reanalyse_policy_targets(batch_at(buf, rows), learner.target_model, search, reanalysis_config(args))
    omega = targets.omega
    visits = torch.stack([buf.search_stats.visits[window[b]] for b in range(4)])
    # reanalysed roots: fresh visit counts summing to S; past the end and the other half: the stored statistics
    assert search.num_searches == 1
    assert torch.equal(omega[0].sum(-1) > 0, torch.ones(6, dtype=torch.bool))
    stored = visits / visits.sum(-1, keepdim=True).clamp(min=1.0)
    assert torch.allclose(omega[1, 1:], stored[1, 1:])
    assert torch.allclose(omega[2:], stored[2:])
    assert not torch.allclose(omega[0], stored[0])
    assert targets.search_seconds > 0


# --- one update, checked against computations written out here ------------------------------------------------------
def _episode_rows(buf, row):
    start, end = int(buf.episode_start[row]), int(buf.episode_end[row])
    return start, end


def test_reward_and_value_targets_align_with_the_unroll_steps():
    args, buf, learner = small_setup()
    batch = batch_at(buf, ROWS)
    K, n, gamma = args.unroll_steps, args.td_steps, args.gamma
    with torch.no_grad():
        z = value_targets(batch, learner.target_model, learner.config)
    for b, row in enumerate(ROWS):
        _, end = _episode_rows(buf, row)
        T_left = end - row  # transitions from t to the episode end
        for j in range(K + n):  # reward fed to unroll step j + 1 is u_{t+j}, 0 past the end
            expected = float(buf.rewards[row + j]) if j < T_left else 0.0
            assert float(batch.rewards[b, j]) == expected
        for k in range(K):  # action of unroll step k + 1 is a_{t+k}, 0 past the end
            expected = buf.actions[row + k] if k < T_left else torch.zeros(2, dtype=torch.long)
            assert torch.equal(batch.actions[b, k], expected)
        for k in range(K + 1):  # z_{t+k} = sum_{j<h} gamma^j u_{t+k+j} + gamma^h v_target(o_{t+k+h}) by hand
            if k >= T_left:
                assert float(z[b, k]) == 0.0
                continue
            h = min(n, T_left - k)
            value = sum(gamma ** j * float(buf.rewards[row + k + j]) for j in range(h))
            if not (k + h == T_left and bool(buf.episode_terminated[row])):
                with torch.no_grad():
                    logits = learner.target_model.initial_inference(buf.inputs[row + k + h][None])[1]
                value += gamma ** h * float(logits_to_scalar(logits, args.value_support_size))
            assert float(z[b, k]) == pytest.approx(value, rel=1e-5, abs=1e-6), (b, k)


def test_value_bootstraps_and_reanalysis_use_the_target_network(monkeypatch):
    import learners.mazero_learner as module

    seen = {}

    def recording(name, function):
        def wrapper(batch, model, *rest):
            seen[name] = model
            return function(batch, model, *rest)
        return wrapper
    monkeypatch.setattr(module, "value_targets", recording("value", module.value_targets))
    # before the feed is built: its reanalysis pool keeps the function it is given
    monkeypatch.setattr(module, "reanalyse_policy_targets", recording("policy", module.reanalyse_policy_targets))
    args, buf, learner = small_setup(reanalyse_ratio=0.5)
    buf.sample = lambda batch_transitions, per_beta: (ROWS, torch.ones(len(ROWS)))
    make_feed(args, buf, learner).train_step(t_env=0)
    assert seen["value"] is learner.target_model and seen["policy"] is learner.target_model
    # and the two networks give different targets, so using the online one would show
    batch = batch_at(buf, ROWS)
    with torch.no_grad():
        assert not torch.allclose(value_targets(batch, learner.target_model, learner.config),
                                  value_targets(batch, learner.model, learner.config))


def test_consistency_target_is_the_detached_online_representation_of_the_real_next_observations():
    args, buf, learner = small_setup()
    batch = batch_at(buf, ROWS)
    _, _, losses = unroll(learner, batch, args)
    model = learner.model
    # by hand: unroll with the real actions; the target is project(represent(o_{t+k})) without the predictor
    latent = model.initial_inference(batch.inputs[:, 0])[0]
    expected = torch.zeros(len(ROWS))
    for k in range(1, args.unroll_steps + 1):
        latent = model.recurrent_inference(latent, batch.actions[:, k - 1])[0]
        latent = latent * 0.5 + latent.detach() * 0.5
        target = model.project(model.represent(batch.inputs[:, k]), with_predictor=False).detach()
        expected = expected - F.cosine_similarity(model.project(latent, with_predictor=True), target, dim=-1)
    assert torch.allclose(losses.consistency, expected, atol=1e-6)
    grads = torch.autograd.grad(losses.consistency.sum(), list(model.parameters()), allow_unused=True)
    hand = torch.autograd.grad(expected.sum(), list(model.parameters()), allow_unused=True)
    for g, h in zip(grads, hand):
        assert (g is None) == (h is None) and (g is None or torch.allclose(g, h, atol=1e-6))


def test_loss_coefficients_the_1_over_K_scaling_and_the_importance_weights():
    args, buf, learner = small_setup(reward_loss_coef=1.5, value_loss_coef=0.25, policy_loss_coef=0.7,
                                consistency_loss_coef=2.0)
    is_weights = torch.tensor([1.0, 0.5, 0.25, 0.8, 0.1])
    buf.sample = lambda batch_transitions, per_beta: (ROWS, is_weights)
    batch = buf.sample_batch(1.0)
    _, _, losses = unroll(learner, batch, args)
    terms = [losses.reward, losses.value, losses.policy, losses.consistency]
    per_sample = sum(c * t.detach().numpy() for c, t in zip((1.5, 0.25, 0.7, 2.0), terms))
    expected = float(np.mean(is_weights.numpy() * per_sample)) / args.unroll_steps
    learner.model.eval()
    make_feed(args, buf, learner).train_step(t_env=0)
    logged = learner.logger.stats["loss"][-1][1] / args.unroll_steps  # the log multiplies the 1/K back
    assert logged == pytest.approx(expected, rel=1e-5)


def test_the_half_latent_gradient_scale_applies_after_each_dynamics_step_only(monkeypatch):
    import learners.mazero_learner as module

    args, buf, learner = small_setup(unroll_steps=1)
    batch = batch_at(buf, ROWS)
    model = learner.model
    gradients = {}
    for scale in (0.5, 1.0):
        monkeypatch.setattr(module, "scale_gradient", lambda tensor, _, s=scale: tensor * s + tensor.detach() * (1 - s))
        _, _, losses = unroll(learner, batch, args)
        named = dict(model.named_parameters())
        heads = (losses.reward + losses.value + losses.policy).sum()
        gradients[scale] = {
            "heads": torch.autograd.grad(heads, list(named.values()), allow_unused=True, retain_graph=True),
            "consistency": dict(zip(named, torch.autograd.grad(losses.consistency.sum(), list(named.values()),
                                                               allow_unused=True)))}
    for g, h in zip(gradients[0.5]["heads"], gradients[1.0]["heads"]):  # step-1 heads read the latent before it
        assert (g is None and h is None) or torch.equal(g, h)
    with_scale, without = gradients[0.5]["consistency"], gradients[1.0]["consistency"]
    for name in without:
        if without[name] is None:
            continue
        if name.startswith(("representation", "dynamics_net", "communication", "feature_norm")):
            assert torch.allclose(with_scale[name], 0.5 * without[name], atol=1e-7), name  # upstream of the scale
        else:
            assert torch.allclose(with_scale[name], without[name], atol=1e-7), name  # projection heads: after it


def test_new_priorities_are_the_online_root_value_error():
    args, buf, learner = small_setup()
    buf.sample = lambda batch_transitions, per_beta: (ROWS, torch.ones(len(ROWS)))
    batch = buf.sample_batch(1.0)
    with torch.no_grad():
        z0 = value_targets(batch, learner.target_model, learner.config)[:, 0]
        v0 = logits_to_scalar(learner.model.initial_inference(batch.inputs[:, 0])[1], args.value_support_size)
    make_feed(args, buf, learner).train_step(t_env=0)
    expected = (v0 - z0).abs().numpy() + 1e-6
    np.testing.assert_allclose(buf.priorities[ROWS], expected, rtol=1e-5)


def test_update_takes_a_batch_and_targets_and_returns_priorities_without_a_replay():
    args, buf, learner = small_setup()
    batch = batch_at(buf, ROWS)
    with torch.no_grad():
        z0 = value_targets(batch, learner.target_model, learner.config)[:, 0]
        v0 = logits_to_scalar(learner.model.initial_inference(batch.inputs[:, 0])[1], args.value_support_size)
        policy = reanalyse_policy_targets(batch, learner.target_model, reanalysis_search(args),
                                          reanalysis_config(args))
    before = buf.priorities.copy()
    parameters = [p.detach().clone() for p in learner.model.parameters()]
    priorities = learner.update(batch, policy, t_env=0)
    np.testing.assert_allclose(priorities, (v0 - z0).abs().numpy() + 1e-6, rtol=1e-5)
    assert learner.update_count == 1
    assert any(not torch.equal(a, b) for a, b in zip(parameters, learner.model.parameters()))
    np.testing.assert_array_equal(buf.priorities, before)  # the learner holds no replay to write to


def test_per_beta_anneals_linearly_from_its_start_to_one():
    # reanalyse_prefetch=0: the update samples its own batch only (prefetched ones are sampled at earlier updates)
    args = mazero_args(2, 3, per_beta_start=0.4, t_max=1000, updates_per_env_step=0.5, reanalyse_prefetch=0,
                       batch_transitions=len(ROWS),
                       **SMALL_NO_DROPOUT)
    learner = make_learner(args, 5)  # 500 updates in the run
    for updates, beta in [(0, 0.4), (125, 0.55), (250, 0.7), (500, 1.0), (900, 1.0)]:
        learner.update_count = updates
        assert learner.per_beta() == pytest.approx(beta)
    buf = filled_buffer(args, 5)
    betas = []
    buf.sample = lambda batch_transitions, per_beta: (betas.append(per_beta), (ROWS, torch.ones(len(ROWS))))[1]
    learner.update_count = 250
    make_feed(args, buf, learner).train_step(t_env=0)
    assert betas == [pytest.approx(0.7)]
