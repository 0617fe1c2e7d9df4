"""ppo_learner pieces against hand-computed numbers: GAE (with and without terminations, time-outs, padding), the
clipped objective's gradient, the clipped/Huber value loss, value normalisation, masks, and checkpoints."""
import logging

import pytest
import torch

from components.episode_buffer import EpisodeBatch
from controllers import REGISTRY as mac_REGISTRY
from helpers.harness_helpers import make_args
from learners.ppo_learner import PPOLearner, clipped_surrogate, gae_advantages, value_loss
from run.common import build_scheme
from utils.value_norm import ValueNorm

torch.set_num_threads(1)

GAMMA, LAMBDA = 0.9, 0.5
# one episode, N = 1: rewards of steps 0..2 and values of the observations at steps 0..3
REWARDS = [1.0, 2.0, 3.0]
VALUES = [0.5, 1.0, 1.5, 2.0]


def gae(rewards, values, terminated, mask):
    as_tensor = lambda rows, shape: torch.tensor(rows, dtype=torch.float32).reshape(shape)  # noqa: E731
    steps = len(rewards[0])
    return gae_advantages(as_tensor(rewards, (len(rewards), steps, 1)),
                          as_tensor(values, (len(values), steps + 1, -1)),
                          as_tensor(terminated, (len(terminated), steps, 1)),
                          as_tensor(mask, (len(mask), steps, 1)), GAMMA, LAMBDA)


def test_gae_time_out_bootstraps_from_the_final_observation():
    # deltas: 1 + .9*1 - .5 = 1.4; 2 + .9*1.5 - 1 = 2.35; 3 + .9*2 - 1.5 = 3.3 (V of the final obs bootstraps)
    # A2 = 3.3; A1 = 2.35 + .45*3.3 = 3.835; A0 = 1.4 + .45*3.835 = 3.12575
    adv = gae([REWARDS], [VALUES], [[0, 0, 0]], [[1, 1, 1]])
    torch.testing.assert_close(adv.flatten(), torch.tensor([3.12575, 3.835, 3.3]))


def test_gae_termination_stops_the_bootstrap():
    # delta2 = 3 - 1.5 = 1.5; A1 = 2.35 + .45*1.5 = 3.025; A0 = 1.4 + .45*3.025 = 2.76125
    adv = gae([REWARDS], [VALUES], [[0, 0, 1]], [[1, 1, 1]])
    torch.testing.assert_close(adv.flatten(), torch.tensor([2.76125, 3.025, 1.5]))


def test_gae_short_episodes_in_a_padded_batch():
    """Episode 0 terminates after 2 steps, episode 1 times out after 2 steps; step 2 is padding for both."""
    adv = gae([REWARDS, REWARDS], [VALUES, VALUES], [[0, 1, 0], [0, 0, 0]], [[1, 1, 0], [1, 1, 0]])
    # terminated: A1 = 2 - 1 = 1; A0 = 1.4 + .45*1 = 1.85.  time-out: A1 = 2.35 (no successor); A0 = 1.4 + .45*2.35
    torch.testing.assert_close(adv[0].flatten(), torch.tensor([1.85, 1.0, 0.0]))
    torch.testing.assert_close(adv[1].flatten(), torch.tensor([2.4575, 2.35, 0.0]))


def test_gae_team_reward_with_per_agent_values():
    values = [[[0.5, 0.0], [1.0, 0.0], [1.5, 0.0], [2.0, 0.0]]]  # agent 1's critic says 0 everywhere
    adv = gae([REWARDS], values, [[0, 0, 0]], [[1, 1, 1]])
    torch.testing.assert_close(adv[0, :, 0], torch.tensor([3.12575, 3.835, 3.3]))
    # agent 1: deltas are the rewards; A2 = 3, A1 = 2 + .45*3 = 3.35, A0 = 1 + .45*3.35 = 2.5075
    torch.testing.assert_close(adv[0, :, 1], torch.tensor([2.5075, 3.35, 3.0]))


@pytest.mark.parametrize("log_ratio, advantage, zero_grad", [
    (0.5, 1.0, True),     # ratio 1.65 > 1.2 with A > 0: clipped, no gradient
    (-0.5, -1.0, True),   # ratio 0.61 < 0.8 with A < 0: clipped, no gradient
    (0.5, -1.0, False),   # ratio above the range but A < 0: the unclipped (pessimistic) term keeps its gradient
    (-0.5, 1.0, False),   # ratio below the range but A > 0: likewise
    (0.1, 1.0, False),    # inside the range
    (-0.1, -1.0, False),
])
def test_clipped_objective_gradient(log_ratio, advantage, zero_grad):
    log_probs = torch.tensor([log_ratio], requires_grad=True)
    objective = clipped_surrogate(log_probs, torch.zeros(1), torch.tensor([advantage]), eps_clip=0.2)
    objective.sum().backward()
    if zero_grad:
        assert log_probs.grad.item() == 0.0
    else:
        # d/dlogp of r * A = r * A
        assert log_probs.grad.item() == pytest.approx(torch.exp(torch.tensor(log_ratio)).item() * advantage)


def test_value_loss_clipping_and_huber():
    old, target = torch.tensor([0.0]), torch.tensor([1.0])
    new = torch.tensor([0.5], requires_grad=True)
    # clipped prediction 0 + clamp(0.5, -0.2, 0.2) = 0.2: loss max((0.5)^2, (0.8)^2) = 0.64, no gradient to new
    loss = value_loss(new, old, target, value_clip=0.2, huber_delta=None)
    assert loss.item() == pytest.approx(0.64)
    loss.backward()
    assert new.grad.item() == 0.0
    # no clip: squared error; Huber: 0.5 e^2 inside delta, delta (|e| - delta / 2) outside
    assert value_loss(torch.tensor([3.0]), old, target, None, None).item() == pytest.approx(4.0)
    assert value_loss(torch.tensor([3.0]), old, target, None, 10.0).item() == pytest.approx(2.0)
    assert value_loss(torch.tensor([3.0]), old, target, None, 1.0).item() == pytest.approx(1.5)


def test_value_norm_round_trips_and_standardises():
    norm = ValueNorm()
    returns = torch.tensor([[1.0, 5.0], [9.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # 100 is padding: it must not enter the statistics
    norm.update(returns, mask)
    assert norm.stats.mean.item() == pytest.approx(5.0, rel=1e-3)
    normalised = norm.normalise(torch.tensor([1.0, 5.0, 9.0]))
    torch.testing.assert_close(normalised, torch.tensor([-1.2247, 0.0, 1.2247]), atol=1e-3, rtol=0)
    x = torch.linspace(-50, 50, 11)
    torch.testing.assert_close(norm.denormalise(norm.normalise(x)), x)
    torch.testing.assert_close(norm.normalise(norm.denormalise(x)), x)


def test_value_norm_with_constant_returns_stays_finite():
    norm = ValueNorm()
    for _ in range(50):
        norm.update(torch.full((8,), 3.0), torch.ones(8))
    assert torch.isfinite(norm.normalise(torch.tensor([3.0, 4.0]))).all()
    assert norm.denormalise(norm.normalise(torch.tensor(4.0))).item() == pytest.approx(4.0, rel=1e-4)


class NullLogger:
    console_logger = logging.getLogger("test")

    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t, to_sacred=True):
        self.stats[key] = value


def make_learner(alg="mappo", use_rnn=True, n_agents=2, n_actions=3, obs_dim=4, state_dim=5, episode_limit=3):
    args = make_args(alg, "matrix", use_rnn=use_rnn, learner_log_interval=0)
    args.n_agents, args.n_actions, args.state_shape, args.obs_shape = n_agents, n_actions, state_dim, obs_dim
    args.episode_limit = episode_limit
    env_info = {"state_shape": state_dim, "obs_shape": obs_dim, "n_actions": n_actions, "n_agents": n_agents,
                "episode_limit": episode_limit}
    scheme, groups, preprocess = build_scheme(args, env_info, mac_REGISTRY[args.mac])
    batch = EpisodeBatch(scheme, groups, 2, episode_limit + 1, preprocess=preprocess)
    mac = mac_REGISTRY[args.mac](batch.scheme, groups, args)
    logger = NullLogger()
    return PPOLearner(mac, batch.scheme, logger, args), batch, logger


def fill_batch(batch, avail_actions):
    """Episode 0: 3 steps, terminal; episode 1: 1 step, terminal, then padding; final observations written."""
    g = torch.Generator().manual_seed(0)
    for t in range(4):
        bs = [0, 1] if t < 2 else [0]
        batch.update({"obs": torch.randn(len(bs), 2, 4, generator=g), "state": torch.randn(len(bs), 5, generator=g),
                      "avail_actions": avail_actions[bs, t]}, bs=bs, ts=t)
    batch.update({"actions": torch.tensor([[[1], [2]], [[0], [0]], [[2], [0]]]),
                  "reward": [[1.0], [0.0], [2.0]], "terminated": [[0], [0], [1]]}, bs=0, ts=slice(0, 3),
                 mark_filled=False)
    batch.update({"actions": torch.tensor([[[2], [1]]]), "reward": [[1.0]], "terminated": [[1]]}, bs=1, ts=0,
                 mark_filled=False)


def test_train_updates_both_networks_and_logs_epymarl_names():
    learner, batch, logger = make_learner()
    avail_actions = torch.ones(2, 4, 2, 3, dtype=torch.int)
    fill_batch(batch, avail_actions)
    before_actor = [p.clone() for p in learner.agent_params]
    before_critic = [p.clone() for p in learner.critic_params]
    learner.train(batch, t_env=10, episode_num=0)
    assert any(not torch.equal(a, b) for a, b in zip(before_actor, learner.agent_params))
    assert any(not torch.equal(a, b) for a, b in zip(before_critic, learner.critic_params))
    for key in ("pg_loss", "critic_loss", "advantage_mean", "agent_grad_norm", "critic_grad_norm", "pi_max",
                "entropy"):
        assert key in logger.stats and isinstance(logger.stats[key], float), key


def test_agents_without_a_choice_do_not_move_the_policy():
    """If every agent has a single available action everywhere, the policy loss has nothing to learn from."""
    learner, batch, logger = make_learner(use_rnn=False)
    avail_actions = torch.zeros(2, 4, 2, 3, dtype=torch.int)
    avail_actions[..., 0] = 1
    fill_batch(batch, avail_actions)
    batch.update({"actions": torch.zeros(3, 2, 1, dtype=torch.long)}, bs=0, ts=slice(0, 3), mark_filled=False)
    batch.update({"actions": torch.zeros(1, 2, 1, dtype=torch.long)}, bs=1, ts=0, mark_filled=False)
    before_actor = [p.clone() for p in learner.agent_params]
    learner.train(batch, t_env=10, episode_num=0)
    assert all(torch.equal(a, b) for a, b in zip(before_actor, learner.agent_params))
    assert logger.stats["agent_grad_norm"] == 0.0 and logger.stats["critic_grad_norm"] > 0.0


@pytest.mark.parametrize("alg", ["mappo", "ippo"])
def test_checkpoint_round_trip(tmp_path, alg):
    learner, batch, _ = make_learner(alg)
    fill_batch(batch, torch.ones(2, 4, 2, 3, dtype=torch.int))
    learner.train(batch, t_env=10, episode_num=0)
    learner.save_models(str(tmp_path))
    restored, _, _ = make_learner(alg)
    restored.load_models(str(tmp_path))
    for a, b in zip(learner.critic_params + learner.agent_params, restored.critic_params + restored.agent_params):
        assert torch.equal(a, b)
    assert torch.equal(learner.value_norm.stats.mean, restored.value_norm.stats.mean)
    assert restored.value_norm.stats.count == learner.value_norm.stats.count
    assert restored.agent_optimiser.state_dict()["state"].keys() == learner.agent_optimiser.state_dict()["state"].keys()

