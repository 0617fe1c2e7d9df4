"""basic_mac and q_learner: batched unroll, mixers, target updates, one learning step."""
import pytest
import torch

from components.episode_buffer import EpisodeBatch
from controllers import REGISTRY as mac_REGISTRY
from helpers.harness_helpers import make_args
from learners import REGISTRY as le_REGISTRY
from modules.mixers import REGISTRY as mixer_REGISTRY
from run.common import build_scheme

torch.set_num_threads(1)
ENV_INFO = {"state_shape": 5, "obs_shape": 4, "n_actions": 3, "n_agents": 2, "episode_limit": 6}


class NullLogger:
    def __init__(self):
        self.values = {}

    def log_stat(self, key, value, t, to_sacred=True):
        self.values.setdefault(key, []).append(value)


def random_batch(args, batch_size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    scheme, groups, preprocess = build_scheme(args, ENV_INFO, mac_REGISTRY["basic_mac"])
    T = ENV_INFO["episode_limit"] + 1
    batch = EpisodeBatch(scheme, groups, batch_size, T, preprocess=preprocess)
    batch.update({
        "obs": torch.randn(batch_size, T, 2, 4, generator=generator),
        "state": torch.randn(batch_size, T, 5, generator=generator),
        "avail_actions": torch.ones(batch_size, T, 2, 3, dtype=torch.int),
        "actions": torch.randint(0, 3, (batch_size, T, 2, 1), generator=generator),
        "reward": torch.randn(batch_size, T, 1, generator=generator),
    })
    terminated = torch.zeros(batch_size, T, 1)
    terminated[:, T - 2] = 1
    batch.update({"terminated": terminated}, mark_filled=False)
    return batch, scheme, groups


def make_mac(**overrides):
    args = make_args("qmix", "matrix", **overrides)
    args.n_agents, args.n_actions, args.state_shape = 2, 3, 5
    batch, _, groups = random_batch(args)
    return args, mac_REGISTRY["basic_mac"](batch.scheme, groups, args), batch


@pytest.mark.parametrize("use_rnn", [False, True])
@pytest.mark.parametrize("obs_last_action", [False, True])
def test_unroll_equals_step_by_step_forward(use_rnn, obs_last_action):
    torch.manual_seed(0)
    _, mac, batch = make_mac(use_rnn=use_rnn, obs_last_action=obs_last_action)
    mac.init_hidden(batch.batch_size)
    stepwise = torch.stack([mac.forward(batch, t) for t in range(batch.max_seq_length)], dim=1)
    assert torch.allclose(mac.unroll(batch), stepwise, atol=1e-6)
    assert stepwise.shape == (4, 7, 2, 3)


def test_mixers():
    args = make_args("qmix", "matrix")
    args.n_agents, args.state_shape = 3, 4
    qs, states = torch.randn(2, 5, 3), torch.randn(2, 5, 4)
    assert torch.allclose(mixer_REGISTRY["vdn"](args)(qs, states), qs.sum(-1, keepdim=True))
    qmix = mixer_REGISTRY["qmix"](args)
    q_tot = qmix(qs.requires_grad_(), states)
    assert q_tot.shape == (2, 5, 1)
    q_tot.sum().backward()
    assert (qs.grad >= 0).all()  # monotonic in every agent's Q


@pytest.mark.parametrize("mixer", ["qmix", "vdn", None])
def test_q_learner_step_reduces_loss_on_a_fixed_batch(mixer):
    torch.manual_seed(0)
    args, mac, batch = make_mac(mixer=mixer, lr=0.01, learner_log_interval=1, target_update_interval_or_tau=1000)
    logger = NullLogger()
    learner = le_REGISTRY["q_learner"](mac, batch.scheme, logger, args)
    for step in range(40):  # fixed targets (no target update within 40 steps): plain regression
        learner.train(batch, t_env=step, episode_num=step)
    losses = logger.values["loss"]
    assert len(losses) == 40
    assert losses[-1] < 0.5 * losses[0]
    assert {"loss", "grad_norm", "td_error_abs", "q_taken_mean", "target_mean"} <= set(logger.values)


def test_target_updates_hard_and_soft():
    args, mac, batch = make_mac(mixer="vdn", target_update_interval_or_tau=3)
    learner = le_REGISTRY["q_learner"](mac, batch.scheme, NullLogger(), args)

    def target_equals_online():
        return all(torch.equal(a, b) for a, b in zip(learner.target_mac.agent.parameters(), mac.agent.parameters()))

    learner.train(batch, 0, 0)
    assert not target_equals_online()
    learner.train(batch, 1, 1)
    learner.train(batch, 2, 2)  # third training step: hard copy
    assert target_equals_online()

    args, mac, batch = make_mac(mixer="vdn", target_update_interval_or_tau=0.5)
    learner = le_REGISTRY["q_learner"](mac, batch.scheme, NullLogger(), args)
    before = [p.clone() for p in learner.target_mac.agent.parameters()]
    learner.train(batch, 0, 0)
    for old, target, online in zip(before, learner.target_mac.agent.parameters(), mac.agent.parameters()):
        assert torch.allclose(target, 0.5 * old + 0.5 * online, atol=1e-6)
