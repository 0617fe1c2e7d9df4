import numpy as np
import pytest
import torch

from controllers.mazero_controller import MAZeroMAC
from helpers.mazero_args import mazero_args
from mcts import ptree
from mcts.search import MCTSSearch, SearchResult, SearchStats

torch.set_num_threads(1)

N, A, OBS, T = 3, 5, 4, 6


def _batch(B=4):
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, A, (B, T, N), generator=g)
    avail_actions = torch.rand(B, T, N, A, generator=g) > 0.5
    avail_actions[..., 0] = True
    return {"obs": torch.randn(B, T, N, OBS, generator=g),
            "actions_onehot": torch.nn.functional.one_hot(actions, A).float(),
            "avail_actions": avail_actions.int()}


def _mac(**overrides):
    args = mazero_args(N, A, num_simulations=6, sampled_actions=4, **overrides)
    mac = MAZeroMAC({"obs": {"vshape": OBS}}, {"agents": N}, args)
    mac.search = MCTSSearch(mac.search_config, seed=0, tree_cls=ptree.SampledTrees)
    return mac


def test_inputs_carry_last_action_and_agent_id():
    mac = _mac()
    batch = _batch()
    assert mac.input_dim == OBS + A + N
    x0 = mac.build_inputs(batch, 0)
    assert torch.all(x0[..., OBS:OBS + A] == 0)  # no previous action at t = 0
    assert torch.equal(x0[0, 2, OBS + A:], torch.tensor([0.0, 0.0, 1.0]))
    x3 = mac.build_inputs(batch, 3)
    assert torch.equal(x3[..., OBS:OBS + A], batch["actions_onehot"][:, 2])
    whole = mac.build_inputs(batch, slice(None))
    for t in range(T):
        assert torch.equal(whole[:, t], mac.build_inputs(batch, t))


def test_training_step_samples_a_searched_available_joint_action_and_returns_statistics():
    mac = _mac()
    mac.set_training_started(True)  # sample from the root visit counts
    batch = _batch()
    bs = [0, 2, 3]
    actions, extras = mac.select_actions(batch, 2, t_env=0, bs=bs, test_mode=False)
    assert actions.shape == (3, N)
    avail_actions = batch["avail_actions"][bs, 2].bool()
    assert bool(avail_actions.gather(2, actions.unsqueeze(-1)).all())
    K = mac.search_config.sampled_actions
    assert extras["joint_actions"].shape == (3, K, N)
    assert extras["visits"].shape == (3, K)
    assert extras["network_value"].shape == (3, 1)
    for b in range(3):  # the chosen joint action is one of the visited sampled children
        visited = extras["joint_actions"][b][extras["visits"][b] > 0]
        assert any(torch.equal(actions[b], row) for row in visited)
    assert set(MAZeroMAC.extra_scheme(mazero_args(N, A, sampled_actions=4))) == set(extras)
    assert mac.search_seconds > 0


def test_before_training_the_action_is_uniform_among_the_sampled_joint_actions():
    mac = _mac()
    assert not mac.training_started  # the run loop sets it once the learner has made an update
    K = mac.search_config.sampled_actions
    sampled = np.full((1, K, N), -1, dtype=np.int64)
    sampled[0, :3] = [[0, 0, 0], [1, 0, 0], [2, 0, 0]]  # three sampled joint actions, one padding row
    visits = np.array([[6, 0, 0, 0]], dtype=np.int64)  # all visits on the first child
    stats = SearchStats(joint_actions=torch.from_numpy(sampled), visits=torch.from_numpy(visits).float(),
                        q_values=torch.zeros(1, K), network_value=torch.zeros(1))
    result = SearchResult(stats=stats, root_values=np.zeros(1), policy_logits=None, num_children=np.array([3]))
    mac.search.run = lambda *a, **k: result
    batch = _batch(B=1)

    def draws(n):
        return [int(mac.select_actions(batch, 0, t_env=0, test_mode=False)[0][0, 0]) for _ in range(n)]

    assert set(draws(60)) == {0, 1, 2}  # uniform over the sampled rows, padding never chosen
    mac.set_training_started(True)
    assert set(draws(20)) == {0}  # from the visit counts


def test_acting_temperature_decay_sharpens_the_visit_distribution_on_the_official_schedule():
    mac = _mac(acting_temperature_decay=True, t_max=1000)
    assert [mac.acting_temperature(t) for t in (0, 499, 500, 749, 750, 1000)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert _mac(t_max=1000).acting_temperature(900) == 1.0  # off by default
    K = mac.search_config.sampled_actions
    sampled = np.zeros((1, K, N), dtype=np.int64)
    sampled[0, :, 0] = np.arange(K)  # child j plays action j for agent 0
    stats = SearchStats(joint_actions=torch.from_numpy(sampled), visits=torch.tensor([[4.0, 2.0, 0.0, 0.0]]),
                        q_values=torch.zeros(1, K), network_value=torch.zeros(1))
    mac.search.run = lambda *a, **k: SearchResult(stats=stats, root_values=np.zeros(1), policy_logits=None,
                                                  num_children=np.array([K]))
    mac.set_training_started(True)
    batch = _batch(B=1)

    def share_of_first_child(t_env, n=4000):
        return np.mean([int(mac.select_actions(batch, 0, t_env=t_env, test_mode=False)[0][0, 0]) == 0
                        for _ in range(n)])

    # visits 4:2 -> 2/3 at T = 1, 16/(16+4) = 0.8 at T = 0.5, 256/(256+16) = 0.94 at T = 0.25 (4000 draws: sd < 0.008)
    assert share_of_first_child(0) == pytest.approx(2 / 3, abs=0.03)
    assert share_of_first_child(600) == pytest.approx(0.8, abs=0.03)
    assert share_of_first_child(900) == pytest.approx(256 / 272, abs=0.02)


def _stub_gumbel_search(mac, selected):
    """The search returns four candidates, child j playing action j for agent 0, visits 4:2:1:1, winner `selected`."""
    K = mac.search_config.sampled_actions
    candidates = np.zeros((1, K, N), dtype=np.int64)
    candidates[0, :, 0] = np.arange(K)
    stats = SearchStats(joint_actions=torch.from_numpy(candidates), visits=torch.tensor([[4.0, 2.0, 1.0, 1.0]]),
                        q_values=torch.zeros(1, K), network_value=torch.zeros(1),
                        policy_target=torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    mac.search.run = lambda *a, **k: SearchResult(stats=stats, root_values=np.zeros(1), policy_logits=None,
                                                  num_children=np.array([K]), selected=torch.tensor([selected]))


@pytest.mark.parametrize("started", [False, True])
def test_the_gumbel_root_acts_with_the_winner_or_from_the_visits(started):
    batch = _batch(B=1)

    def first_actions(mac, n):
        return np.array([int(mac.select_actions(batch, 0, t_env=0, test_mode=False)[0][0, 0]) for _ in range(n)])

    winner = _mac(root_search="gumbel")  # gumbel_selfplay_action "winner", Gumbel MuZero's rule
    _stub_gumbel_search(winner, selected=3)
    winner.set_training_started(started)
    assert set(first_actions(winner, 20)) == {3}  # the winner, whatever the visits and before or after training
    visits = _mac(root_search="gumbel", gumbel_selfplay_action="visits")
    _stub_gumbel_search(visits, selected=3)
    visits.set_training_started(started)
    shares = np.bincount(first_actions(visits, 4000), minlength=4) / 4000
    # the sampled root's rules: uniform among the candidates before the first update, then visits 4:2:1:1
    expected = [0.5, 0.25, 0.125, 0.125] if started else [0.25] * 4
    assert shares == pytest.approx(expected, abs=0.03)  # 4000 draws: sd < 0.008
    assert _mac(root_search="gumbel", gumbel_selfplay_action="visits").select_actions(batch, 0, t_env=0,
                                                                                     test_mode=True).shape == (1, N)


def test_gumbel_selfplay_action_is_checked():
    with pytest.raises(ValueError, match="gumbel_selfplay_action"):
        _mac(gumbel_selfplay_action="argmax")


def test_test_mode_without_mcts_is_masked_policy_argmax_and_skips_search():
    mac = _mac(test_mcts=False)
    with torch.no_grad():
        mac.agent.policy_head.net[-1].weight.normal_()
    batch = _batch()
    actions = mac.select_actions(batch, 1, t_env=0, test_mode=True)
    inputs = mac.build_inputs(batch, 1)
    logits = mac.agent.predict(mac.agent.represent(inputs))[1]
    avail_actions = batch["avail_actions"][:, 1].bool()
    expected = logits.masked_fill(~avail_actions, -float("inf")).argmax(-1)
    assert torch.equal(actions, expected)
    assert mac.test_search_seconds == 0.0 and mac.search_seconds == 0.0


def test_test_mode_with_mcts_takes_most_visited_child():
    mac = _mac(test_mcts=True)
    batch = _batch()
    actions = mac.select_actions(batch, 1, t_env=0, test_mode=True)
    assert mac.test_search_seconds > 0
    # Repeating the noiseless search from the same tree seed reproduces it: compare with the argmax visits.
    mac.search = MCTSSearch(mac.search_config, seed=0, tree_cls=ptree.SampledTrees)
    result = mac.search.run(mac.agent, mac.build_inputs(batch, 1), batch["avail_actions"][:, 1].bool(), False)
    best = result.stats.joint_actions[np.arange(4), result.stats.visits.argmax(1)]
    assert np.array_equal(actions.numpy(), best)
