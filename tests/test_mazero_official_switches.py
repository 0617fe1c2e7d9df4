"""The switches to the official code's behaviour (docs/mazero.md, "Where we differ from the official code"):
two_hot_target, latent_grad_scale_at, timeout_terminal, and the reanalysis simulation count."""
import math

import pytest
import torch
import torch.nn.functional as F

from components.mazero_replay import MAZeroReplayBuffer, ReplayConfig
from learners.mazero_learner import policy_loss_terms, support_cross_entropy, value_targets
from learners.mazero_reanalyse import ReanalysisWorker, reanalyse_with_seed
from mcts.search import SearchStats, avail_or_all
from helpers.mazero_learner_helpers import ROWS, batch_at, make_feed, make_learner, reanalysis_config, small_setup, unroll
from helpers.mazero_args import mazero_args
from run.mazero_config import build_mazero_config
from utils.config_record import record_from_config
from utils.value_transform import logits_to_scalar, scalar_to_two_hot

DYNAMICS_PREFIXES = ("dynamics_net", "communication")  # parameters only the unrolled steps (k >= 1) reach


def test_official_two_hot_target_by_hand():
    x = torch.tensor([0.0, 3.0, -3.0, 1e6])  # h(3) = 1.003: bins 1 (index 6) and 2 (index 7)
    exact = scalar_to_two_hot(x, 5)
    official = scalar_to_two_hot(x, 5, "official")
    assert exact[0, 5] == 1.0 and exact[3, 10] == 1.0  # 0 and a clipped end: one-hot in ours
    assert torch.equal(official[0], torch.zeros(11)) and torch.equal(official[3], torch.zeros(11))  # all-zero
    for row in (1, 2):  # a non-integer h(x): the same two weights in both
        assert torch.equal(official[row], exact[row])
    assert official[1, 6].item() == pytest.approx(0.997, abs=1e-6)
    assert official[1, 7].item() == pytest.approx(0.003, abs=1e-6)
    # an all-zero target adds no cross-entropy; uniform logits give log 11 for the others
    ce = support_cross_entropy(torch.zeros(4, 11), x, 5, "official")
    assert ce.tolist() == pytest.approx([0.0, math.log(11), math.log(11), 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="two_hot_target"):
        scalar_to_two_hot(x, 5, "floor")


def test_official_two_hot_drops_the_zero_reward_steps_from_the_reward_loss():
    args, buf, learner = small_setup(two_hot_target="official")
    batch = batch_at(buf, ROWS)
    batch.rewards[:, 0] = 0.0  # a zero reward at unroll step 1 of every sample; steps past the end are 0 too
    _, _, losses = unroll(learner, batch, args)
    # by hand: the exact CE of each unroll step, kept only where the reward is not 0
    latent = learner.model.initial_inference(batch.inputs[:, 0])[0]
    expected = torch.zeros(len(ROWS))
    for k in range(1, args.unroll_steps + 1):
        latent, reward_logits = learner.model.dynamics(latent, batch.actions[:, k - 1])
        reward = batch.rewards[:, k - 1]
        ce = -(scalar_to_two_hot(reward, args.reward_support_size) * F.log_softmax(reward_logits, -1)).sum(-1)
        expected = expected + ce * (reward != 0)
    assert bool((batch.rewards[:, :args.unroll_steps] == 0).any(1).all())
    assert torch.allclose(losses.reward, expected, atol=1e-6)


def _switched(**overrides):
    """small_setup's learner with its online weights perturbed: the heads' zero-initialised output layers (official
    init) pass no gradient to the latent, which would hide where the latent-gradient scale sits."""
    args, buf, learner = small_setup(**overrides)
    torch.manual_seed(2)
    with torch.no_grad():
        for p in learner.model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return args, buf, learner


def _gradients(loss, model):
    named = dict(model.named_parameters())
    return dict(zip(named, torch.autograd.grad(loss, list(named.values()), allow_unused=True, retain_graph=True)))


def test_latent_scale_halves_the_step_k_value_and_policy_gradients_into_the_dynamics():
    grads = {}
    for place in ("next_step", "latent"):
        args, buf, learner = _switched(unroll_steps=1, latent_grad_scale_at=place)
        batch = batch_at(buf, ROWS)
        _, _, losses = unroll(learner, batch, args)
        grads[place] = {"heads": _gradients((losses.value + losses.policy).sum(), learner.model),
                        "reward": _gradients(losses.reward.sum(), learner.model),
                        "consistency": _gradients(losses.consistency.sum(), learner.model)}
    ours, official = grads["next_step"], grads["latent"]
    checked = 0
    for name, ours_grad in ours["heads"].items():
        if ours_grad is None:
            continue
        if name.startswith(DYNAMICS_PREFIXES):  # reached only through the step-1 latent
            assert torch.allclose(official["heads"][name], 0.5 * ours_grad, atol=1e-7), name
            checked += int(ours_grad.abs().max() > 1e-4)
        elif name.startswith(("value_head", "policy_head")):  # the heads themselves: unscaled in both
            assert torch.allclose(official["heads"][name], ours_grad, atol=1e-7), name
    assert checked > 0
    for term in ("reward", "consistency"):  # the reward head reads the latent before the scale; consistency after
        for name, ours_grad in ours[term].items():
            assert (ours_grad is None) == (official[term][name] is None)
            assert ours_grad is None or torch.allclose(official[term][name], ours_grad, atol=1e-7), (term, name)


def test_latent_scale_equals_the_official_hook_on_the_latent():
    args, buf, learner = _switched(unroll_steps=2, latent_grad_scale_at="latent")
    batch = batch_at(buf, ROWS)
    targets, policy, losses = unroll(learner, batch, args)
    model = learner.model
    total = (losses.reward + losses.value + losses.policy + losses.consistency).sum()
    # by hand, the official loop: the dynamics' reward head reads its per-agent state, the returned latent is a
    # reshape of it (a view here) that the step-k heads read, and then a hook halves that view's whole gradient
    with torch.no_grad():
        consistency_targets = [model.project(model.represent(batch.inputs[:, k]), with_predictor=False)
                               for k in range(1, args.unroll_steps + 1)]
    latent, value_logits, policy_logits = model.initial_inference(batch.inputs[:, 0])
    space = model.action_space
    hand = (support_cross_entropy(value_logits, targets[:, 0], args.value_support_size)
            + policy_loss_terms(space, policy_logits, policy.joint_actions[:, 0], policy.coef[:, 0]))
    for k in range(1, args.unroll_steps + 1):
        state, reward_logits = model.dynamics(latent, batch.actions[:, k - 1])
        latent = state.view(state.shape)
        value_logits, policy_logits = model.predict(latent)
        hand = hand + (support_cross_entropy(reward_logits, batch.rewards[:, k - 1], args.reward_support_size)
                       + support_cross_entropy(value_logits, targets[:, k], args.value_support_size)
                       + policy_loss_terms(space, policy_logits, policy.joint_actions[:, k], policy.coef[:, k])
                       - F.cosine_similarity(model.project(latent, with_predictor=True), consistency_targets[k - 1],
                                             dim=-1))
        latent.register_hook(lambda grad: grad * 0.5)
    assert torch.allclose(total, hand.sum(), atol=1e-5)
    ours, official = _gradients(total, model), _gradients(hand.sum(), model)
    for name in ours:
        assert (ours[name] is None) == (official[name] is None), name
        # 1e-5: the learner runs the heads on all steps in one batched call (another float summation order)
        assert ours[name] is None or torch.allclose(ours[name], official[name], rtol=1e-5, atol=1e-5), name


def _one_episode(args, terminated):
    """A hand-made 3-step episode (rewards 1, 2, 3) alone in a replay; its MAZeroBatch at t = 0."""
    obs_dim, T = 5, 3
    buf = MAZeroReplayBuffer(record_from_config(ReplayConfig, args, buffer_transitions=50, seed=0), obs_dim)
    g = torch.Generator().manual_seed(1)
    Ks, N = args.sampled_actions, args.n_agents
    buf.add_episode(torch.randn(T + 1, N, obs_dim, generator=g), torch.zeros(T, N, dtype=torch.long),
                    torch.ones(T + 1, N, args.n_actions, dtype=torch.bool), torch.tensor([1.0, 2.0, 3.0]), terminated,
                    SearchStats(joint_actions=torch.zeros(T, Ks, N, dtype=torch.long), visits=torch.ones(T, Ks),
                                q_values=torch.zeros(T, Ks), network_value=torch.zeros(T)))
    return buf, batch_at(buf, torch.tensor([0]).numpy())


@pytest.mark.parametrize("timeout_terminal", [False, True])
def test_timeout_terminal_drops_the_bootstrap_of_a_time_out_only(timeout_terminal):
    args = mazero_args(2, 3, sampled_actions=2, unroll_steps=1, td_steps=5, gamma=0.9, use_off_policy_correction=False,
                       timeout_terminal=timeout_terminal, t_max=1000, batch_transitions=1, learner_log_interval=0,
                       latent_dim=8, representation_hidden=[8], dynamics_hidden=[8], head_hidden=[4],
                       attention_heads=2, attention_ff_dim=8, projection_hidden=8, projection_dim=8,
                       predictor_hidden=4, attention_dropout=0.0)
    learner = make_learner(args, 5)
    model = learner.target_model
    returns = [1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3]  # z_0, z_1 without the bootstrap (h = 3 and 2 steps to T)
    for terminated in (False, True):  # a time-out, then a true terminal
        buf, batch = _one_episode(args, terminated)
        with torch.no_grad():
            z = value_targets(batch, model, learner.config)
            v_final = float(logits_to_scalar(model.initial_inference(buf.inputs[3][None])[1], args.value_support_size))
        bootstraps = not terminated and not timeout_terminal
        expected = [returns[0] + 0.9 ** 3 * v_final * bootstraps, returns[1] + 0.9 ** 2 * v_final * bootstraps]
        assert z[0].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6), terminated
    assert v_final != 0.0  # the switch shows in the targets


def test_reanalysis_searches_with_reanalyse_num_simulations():
    args, buf, learner = small_setup(num_simulations=6, reanalyse_num_simulations=3, reanalyse_ratio=1.0)
    batch = batch_at(buf, ROWS)

    def search_first_roots(b, m, s, config):
        return s.run(m, b.inputs[:, 0], avail_or_all(b.avail_actions[:, 0]), add_noise=True)

    worker = ReanalysisWorker(learner.target_model, reanalysis_config(args), search_first_roots, "cpu", 1)
    for search in (make_feed(args, buf, learner).search, worker.search):  # in process and on a Ray worker
        result = reanalyse_with_seed(search_first_roots, batch, 0, learner.target_model, search,
                                     reanalysis_config(args))
        assert result.stats.visits.sum(-1).tolist() == [3.0] * len(ROWS)  # children visits sum to S
    assert args.num_simulations == 6  # self-play keeps its own count
    default_args, default_buf, default_learner = small_setup(num_simulations=6)
    default_search = make_feed(default_args, default_buf, default_learner).search
    assert default_args.reanalyse_num_simulations is None and default_search.config.num_simulations == 6


@pytest.mark.parametrize("key, value", [("two_hot_target", "floor"), ("latent_grad_scale_at", "hidden"),
                                        ("timeout_terminal", "yes"), ("reanalyse_num_simulations", 0)])
def test_a_bad_switch_value_is_an_error_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        build_mazero_config(mazero_args(2, 3, **{key: value}))
