"""Action selectors and epsilon schedules (EPyMARL semantics)."""
from types import SimpleNamespace

import pytest
import torch

from components.action_selectors import REGISTRY as selector_REGISTRY
from components.epsilon_schedules import DecayThenFlatSchedule

torch.set_num_threads(1)


def eps_args(start=1.0, finish=0.05, anneal=100, evaluation=0.0):
    return SimpleNamespace(epsilon_start=start, epsilon_finish=finish, epsilon_anneal_time=anneal,
                           evaluation_epsilon=evaluation, test_greedy=True)


def test_linear_schedule():
    schedule = DecayThenFlatSchedule(1.0, 0.05, 100, decay="linear")
    assert schedule.eval(0) == 1.0
    assert schedule.eval(50) == pytest.approx(0.525)
    assert schedule.eval(100) == pytest.approx(0.05)
    assert schedule.eval(10 ** 6) == pytest.approx(0.05)


def test_exp_schedule_reaches_finish_at_time_length():
    schedule = DecayThenFlatSchedule(1.0, 0.05, 100, decay="exp")
    values = [schedule.eval(t) for t in range(0, 201, 10)]
    assert values[0] == 1.0
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert schedule.eval(100) == pytest.approx(0.05)
    assert schedule.eval(200) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        DecayThenFlatSchedule(1.0, 0.05, 100, decay="cosine")


def test_epsilon_greedy_greedy_respects_availability():
    selector = selector_REGISTRY["epsilon_greedy"](eps_args(start=0.0, finish=0.0))
    q = torch.tensor([[[5.0, 1.0, 3.0], [0.0, 2.0, 1.0]]])
    avail_actions = torch.tensor([[[0, 1, 1], [1, 1, 1]]])
    assert selector.select_action(q, avail_actions, t_env=0).tolist() == [[2, 1]]
    assert selector.epsilon == 0.0


def test_epsilon_greedy_random_actions_are_available_and_uniform():
    torch.manual_seed(0)
    selector = selector_REGISTRY["epsilon_greedy"](eps_args(start=1.0, finish=1.0))
    q = torch.zeros(4000, 1, 4)
    avail_actions = torch.tensor([1, 0, 1, 1]).expand(4000, 1, 4)
    actions = selector.select_action(q, avail_actions, t_env=0).flatten()
    counts = torch.bincount(actions, minlength=4).float() / 4000
    assert counts[1] == 0
    assert torch.allclose(counts[[0, 2, 3]], torch.full((3,), 1 / 3), atol=0.04)


def test_epsilon_greedy_schedule_and_evaluation_epsilon():
    selector = selector_REGISTRY["epsilon_greedy"](eps_args(start=1.0, finish=0.0, anneal=100, evaluation=0.25))
    q, avail_actions = torch.zeros(1, 1, 2), torch.ones(1, 1, 2)
    selector.select_action(q, avail_actions, t_env=50)
    assert selector.epsilon == pytest.approx(0.5)
    selector.select_action(q, avail_actions, t_env=50, test_mode=True)
    assert selector.epsilon == 0.25


def test_multinomial_never_samples_unavailable_and_is_greedy_in_test():
    torch.manual_seed(0)
    selector = selector_REGISTRY["multinomial"](eps_args())
    probs = torch.tensor([0.5, 0.3, 0.2]).expand(2000, 1, 3)
    avail_actions = torch.tensor([0, 1, 1]).expand(2000, 1, 3)
    actions = selector.select_action(probs, avail_actions, t_env=0).flatten()
    assert (actions != 0).all()
    assert (actions == 1).float().mean().item() == pytest.approx(0.6, abs=0.05)
    assert selector.select_action(probs[:1], avail_actions[:1], 0, test_mode=True).tolist() == [[1]]


def test_soft_policies_samples_given_probabilities():
    torch.manual_seed(0)
    selector = selector_REGISTRY["soft_policies"](eps_args())
    probs = torch.tensor([0.1, 0.9]).expand(3000, 1, 2)
    actions = selector.select_action(probs, torch.ones_like(probs), t_env=0).flatten().float()
    assert actions.mean().item() == pytest.approx(0.9, abs=0.03)
    assert selector.select_action(probs[:1], torch.ones(1, 1, 2), 0, test_mode=True).tolist() == [[1]]
