"""The Gumbel root (`root_search="gumbel"`, docs/gumbel.md) against independent computations: its k-sets against the
exact distribution of sampling without replacement over the enumerated joint space (and a brute-force Gumbel-top-k
of it), Sequential Halving's schedule and winner against a plain-Python reference, the improved policy and its
per-agent marginals against a direct computation, ctree == ptree, and the sampled root's new read-outs against the
formulas the learner and controller used before them."""
import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

import mcts
from mcts import _checks, ptree

ctree = mcts.ctree
assert ctree is not None, "mcts.ctree is not built: run `pip install -e .` or `python setup.py build_ext --inplace`"

TREE_KWARGS = dict(os_rho=0.25, os_lambda=0.8, gamma=0.99)


def masked_prior(probs, avail_actions):
    """pi~ = normalise(pi * m + 1e-4 * m) per agent, float64 (docs/mcts.md, "Semantics")."""
    weights = np.where(avail_actions, probs.astype(np.float64) + 1e-4, 0.0)
    return weights / weights.sum(-1, keepdims=True)


def joint_space(prior):
    """Every joint action with a non-zero prior and its probability: ([J, N] int, [J] float64) for prior [N, A]."""
    actions = [a for a in itertools.product(*[np.flatnonzero(row) for row in prior])]
    return np.array(actions), np.array([np.prod([prior[i, a[i]] for i in range(len(a))]) for a in actions])


def set_probabilities(p, k):
    """Exact law of the unordered set of k draws without replacement from p (the law of Gumbel-top-k):
    sum over the orders of the set of prod_t p(x_t) / (1 - sum_{s<t} p(x_s))."""
    out = {}
    for subset in itertools.combinations(range(len(p)), k):
        total = 0.0
        for order in itertools.permutations(subset):
            prob, left = 1.0, 1.0
            for x in order:
                prob *= p[x] / left
                left -= p[x]
            total += prob
        out[subset] = total
    return out


def root_sets(module, probs, avail_actions, sampled_actions, num_roots, seed, gumbel_noise=True):
    """The root children of `num_roots` independent trees with the same inputs, as sorted tuples of joint actions."""
    N, A = probs.shape
    trees = module.SampledTrees(num_roots, N, A, sampled_actions, 1, seed=seed, root_search="gumbel", **TREE_KWARGS)
    trees.prepare(np.zeros(num_roots, np.float32), np.broadcast_to(probs, (num_roots, N, A)).copy(),
                  np.broadcast_to(avail_actions, (num_roots, N, A)).copy(), None, 0.0, gumbel_noise=gumbel_noise)
    children = trees.root_children()
    return [tuple(tuple(int(x) for x in children["actions"][b, c]) for c in range(children["num_children"][b]))
            for b in range(num_roots)]


def total_variation(counts, probabilities):
    n = sum(counts.values())
    return 0.5 * sum(abs(counts.get(key, 0) / n - p) for key, p in probabilities.items())


@pytest.mark.parametrize("case", ["two_agents", "dead_agent", "pruned_beam"])
def test_sampled_sets_follow_gumbel_top_k_over_the_enumerated_joint_space(case):
    # A skewed prior with an unavailable action; "dead_agent" adds an agent whose only available action is the
    # no-op 0; "pruned_beam" has more prefixes than K_s after the second agent, so the beam drops some and the shifted
    # (truncated) Gumbels decide which (without the shift its total variation is 0.16 here).
    probs = np.array([[0.6, 0.3, 0.1], [0.15, 0.05, 0.8]], np.float32)
    avail_actions = np.array([[True, True, True], [True, False, True]])
    sampled_actions, n = 3, 20000
    if case == "dead_agent":
        probs = np.vstack([probs[:1], np.float32([[0.2, 0.5, 0.3]]), probs[1:]])
        avail_actions = np.vstack([avail_actions[:1], [[True, False, False]], avail_actions[1:]])
    if case == "pruned_beam":
        probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]], np.float32)
        avail_actions = np.ones((3, 2), bool)
        sampled_actions = 2
    actions, p = joint_space(masked_prior(probs, avail_actions))
    exact = {tuple(tuple(int(x) for x in actions[j]) for j in subset): prob
             for subset, prob in set_probabilities(p, sampled_actions).items()}
    assert abs(sum(exact.values()) - 1.0) < 1e-12
    counts = Counter(root_sets(ctree, probs, avail_actions, sampled_actions, n, seed=11))
    assert set(counts) <= set(exact), "a sampled set holds an unavailable or repeated joint action"
    # Brute force over the enumerated space: top-k of log p + Gumbel noise.
    rng = np.random.default_rng(0)
    top = np.argsort(-(np.log(p) + rng.gumbel(size=(n, len(p)))), axis=1)[:, :sampled_actions]
    brute = Counter(tuple(sorted(tuple(int(x) for x in actions[j]) for j in row)) for row in top)
    keys = sorted(exact)
    observed = np.array([counts.get(key, 0) for key in keys])
    expected = np.array([exact[key] for key in keys]) * n
    assert scipy_stats.chisquare(observed, expected).pvalue > 1e-3
    assert total_variation(counts, exact) < 0.03
    assert total_variation(brute, exact) < 0.03  # the reference itself
    # i.i.d. draws deduplicated (the sampled root's law) are far from it: the test tells the two apart.
    iid = Counter(tuple(sorted(set(tuple(int(x) for x in actions[j])
                                   for j in rng.choice(len(p), sampled_actions, p=p))))
                  for _ in range(5000))
    assert total_variation(iid, exact) > 0.1


def test_without_noise_the_children_are_the_k_most_probable_joint_actions():
    rng = np.random.default_rng(4)
    N, A, sampled_actions = 3, 5, 7
    for _ in range(20):
        probs = rng.dirichlet([1.0] * A, size=N).astype(np.float32)
        avail_actions = rng.random((N, A)) < 0.7
        avail_actions[:, 0] = True
        actions, p = joint_space(masked_prior(probs, avail_actions))
        best = sorted(tuple(int(x) for x in actions[j]) for j in np.argsort(-p)[:sampled_actions])
        for module in (ctree, ptree):
            sets = root_sets(module, probs, avail_actions, sampled_actions, 1, seed=0, gumbel_noise=False)
            assert sorted(sets[0]) == best
    # Fewer available joint actions than K_s: every one of them, once.
    avail_actions = np.zeros((N, A), bool)
    avail_actions[:, :2] = True
    avail_actions[1] = [True, False, False, False, False]
    assert len(root_sets(ctree, probs, avail_actions, 8, 1, seed=0)[0]) == 4


def reference_schedule(m, S):
    """Sequential Halving written out per action: in each of the ceil(log2 m) phases (and after them, with two
    actions), every remaining action is visited floor(S / (ceil(log2 m) |remaining|)) times (at least once), round by
    round; the list of the visit count each chosen action had."""
    if m == 1:
        return list(range(S))
    visits = [0] * m
    remaining = list(range(m))
    out = []
    while len(out) < S:
        for _ in range(max(1, S // (math.ceil(math.log2(m)) * len(remaining)))):
            for a in remaining:
                out.append(visits[a])
                visits[a] += 1
        remaining = remaining[:max(2, len(remaining) // 2)]
    return out[:S]


def test_halving_schedule_matches_the_reference():
    for m in range(1, 17):
        for S in range(1, 120):
            schedule = _checks.halving_schedule(m, S)
            assert schedule == reference_schedule(m, S), (m, S)
    # Gumbel MuZero's example: 4 actions, 8 simulations, two phases.
    assert _checks.halving_schedule(4, 8) == [0, 0, 0, 0, 1, 1, 2, 2]


def completed_q_and_sigma(log_prior, visits, q, v_hat, c_visit, c_scale, delta):
    """Danihelka et al. 2022, Eq. 10 and App. D, computed directly: completed Q and sigma over the root children."""
    visited = visits > 0
    prior = np.exp(log_prior)
    v_mix = v_hat
    if visited.any():
        v_mix = (v_hat + visits.sum() * (prior[visited] * q[visited]).sum() / prior[visited].sum()) / (1 + visits.sum())
    completed = np.where(visited, q, v_mix)
    span = max(completed.max() - completed.min(), delta)
    return completed, (c_visit + visits.max()) * c_scale * (completed - completed.min()) / span


@pytest.mark.parametrize("module", [ctree, ptree], ids=["ctree", "ptree"])
def test_halving_visits_and_winner_match_a_plain_reference_on_fixed_values(module):
    # gamma 1, rewards 0, lambda 1: every node under root child c returns value[c], so Q(c) = value[c] exactly; no
    # noise, so each child's score is its joint log-prior. The reference replays the rule simulation by simulation.
    rng = np.random.default_rng(7)
    N, A, sampled_actions, c_visit, c_scale, delta = 2, 4, 6, 50.0, 0.1, 0.01
    for trial in range(12):
        S = int(rng.integers(3, 40))
        probs = rng.dirichlet([1.0] * A, size=(1, N)).astype(np.float32)
        avail_actions = np.ones((1, N, A), bool)
        v_hat = float(rng.integers(-8, 8) * 0.25)
        trees = module.SampledTrees(1, N, A, sampled_actions, S, os_rho=0.0, os_lambda=1.0, gamma=1.0, seed=trial,
                                    root_search="gumbel", gumbel_c_visit=c_visit, gumbel_c_scale=c_scale,
                                    value_delta_min=delta)
        trees.prepare(np.float32([v_hat]), probs, avail_actions, None, 0.0, gumbel_noise=False)
        children = trees.root_children()
        m = int(children["num_children"][0])
        actions = [tuple(children["actions"][0, c]) for c in range(m)]
        prior = masked_prior(probs[0], avail_actions[0])
        log_prior = np.array([sum(math.log(prior[i, a[i]]) for i in range(N)) for a in actions])
        value = rng.integers(-8, 8, size=m) * 0.25
        # the reference
        visits = np.zeros(m, int)
        expected_choices = []
        for target in reference_schedule(m, S):
            _, sigma = completed_q_and_sigma(log_prior, visits, value, v_hat, c_visit, c_scale, delta)
            candidates = [c for c in range(m) if visits[c] == target]
            choice = max(candidates, key=lambda c: (log_prior[c] + sigma[c], -c))
            expected_choices.append(choice)
            visits[choice] += 1
        # the tree, with the network's value of a node set by the root child it descends from
        root_child_of = {0: None}
        choices = []
        for j in range(S):
            parent, joint = trees.select()
            c = actions.index(tuple(joint[0])) if parent[0] == 0 else root_child_of[int(parent[0])]
            root_child_of[j + 1] = c
            choices.append(c)
            trees.expand(np.float32([value[c]]), np.float32([0.0]), np.full((1, N, A), 1.0 / A, np.float32))
        assert choices == expected_choices
        children = trees.root_children()
        np.testing.assert_array_equal(children["visits"][0, :m], visits)
        _, sigma = completed_q_and_sigma(log_prior, visits, value, v_hat, c_visit, c_scale, delta)
        most = visits.max()
        winner = max((c for c in range(m) if visits[c] == most), key=lambda c: (log_prior[c] + sigma[c], -c))
        assert children["selected"][0] == winner


def random_gumbel_search(module, rng, B, N, A, sampled_actions, S, gumbel_noise=True, **kwargs):
    probs = rng.dirichlet([0.7] * A, size=(B, N)).astype(np.float32)
    avail_actions = rng.random((B, N, A)) < 0.7
    avail_actions[..., 0] = True
    values = rng.normal(size=B).astype(np.float32)
    trees = module.SampledTrees(B, N, A, sampled_actions, S, root_search="gumbel", **{**TREE_KWARGS, **kwargs})
    trees.prepare(values, probs, avail_actions, None, 0.0, gumbel_noise=gumbel_noise)
    for _ in range(S):
        trees.select()
        trees.expand(rng.normal(size=B).astype(np.float32), rng.normal(size=B).astype(np.float32),
                     rng.dirichlet([0.7] * A, size=(B, N)).astype(np.float32))
    return trees, probs, avail_actions, values


def test_improved_policy_and_its_marginals_match_a_direct_computation():
    from learners.mazero_learner import joint_log_probs

    rng = np.random.default_rng(5)
    B, N, A, sampled_actions = 6, 3, 5, 8
    for S in (3, 8, 30):  # fewer simulations than children: unvisited children get v_mix
        trees, probs, avail_actions, values = random_gumbel_search(ptree, rng, B, N, A, sampled_actions, S, seed=S)
        children = trees.root_children()
        for b in range(B):
            m = children["num_children"][b]
            actions = children["actions"][b, :m]
            prior = masked_prior(probs[b], avail_actions[b])
            log_prior = np.array([sum(math.log(prior[i, a[i]]) for i in range(N)) for a in actions])
            visits = children["visits"][b, :m]
            # q of the visited children as the tree reports them (r + gamma V, checked by test_mcts_semantics.py)
            q = children["q_values"][b, :m].astype(np.float64)
            completed, sigma = completed_q_and_sigma(log_prior, visits, q, float(values[b]), 50.0, 0.1, 0.01)
            improved = np.exp(log_prior + sigma - (log_prior + sigma).max())
            improved /= improved.sum()
            np.testing.assert_allclose(children["policy_target"][b, :m], improved, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(children["q_values"][b, :m], completed, rtol=1e-5, atol=1e-6)
            assert (children["policy_target"][b, m:] == 0).all()
            np.testing.assert_allclose(children["priors"][b, :m], np.exp(log_prior), rtol=1e-5)
            # The per-agent marginals of the improved policy, and the policy loss that trains towards them: the
            # cross-entropy of the factorised policy against the joint target is the per-agent marginals' one.
            marginals = np.zeros((N, A))
            for j in range(m):
                for i in range(N):
                    marginals[i, actions[j, i]] += improved[j]
            np.testing.assert_allclose(marginals.sum(1), 1.0)
            logits = torch.randn(1, N, A, dtype=torch.float64)
            joint_loss = -(torch.from_numpy(improved)[None] * joint_log_probs(
                logits, torch.from_numpy(actions.astype(np.int64))[None])).sum()
            marginal_loss = -(torch.from_numpy(marginals) * torch.log_softmax(logits[0], -1)).sum()
            torch.testing.assert_close(joint_loss, marginal_loss)
        assert (children["visits"].sum(1) == S).all()


def test_ctree_matches_ptree_with_the_gumbel_root():
    rng = np.random.default_rng(20261207)
    for _ in range(150):
        B, N, A, sampled_actions = (int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 7)),
                                    int(rng.integers(1, 9)))
        S = int(rng.integers(1, 31))
        kwargs = dict(os_rho=float(rng.choice([0.0, 0.25, 1.0])), os_lambda=float(rng.choice([0.0, 0.8, 1.0])),
                      gamma=float(rng.choice([0.99, 1.0])), value_delta_min=float(rng.choice([0.01, 1.0])),
                      use_os_lambda=bool(rng.random() < 0.85), seed=int(rng.integers(0, 2**63)),
                      gumbel_c_visit=float(rng.choice([50.0, 0.0])), gumbel_c_scale=float(rng.choice([0.1, 1.0])))
        uniform = rng.random() < 0.25  # equal priors: exact score ties in the beam and at the root
        probs = (np.full((B, N, A), 1.0 / A, np.float32) if uniform
                 else rng.dirichlet([0.5] * A, size=(B, N)).astype(np.float32))
        avail_actions = rng.random((B, N, A)) < 0.6
        avail_actions[np.arange(B)[:, None], np.arange(N)[None, :], rng.integers(0, A, size=(B, N))] = True
        root = (rng.normal(size=B).astype(np.float32), probs, avail_actions, None, 0.0)
        noise = bool(rng.random() < 0.7)
        steps = [(rng.normal(size=B).astype(np.float32), rng.normal(size=B).astype(np.float32),
                  rng.dirichlet([0.5] * A, size=(B, N)).astype(np.float32)) for _ in range(S)]
        results = []
        for module in (ctree, ptree):
            trees = module.SampledTrees(B, N, A, sampled_actions, S, root_search="gumbel", **kwargs)
            trees.prepare(*root, gumbel_noise=noise)
            selections = []
            for values, rewards, leaf_probs in steps:
                selections.append(trees.select())
                trees.expand(values, rewards, leaf_probs)
            results.append((selections, trees.root_children(), trees.root_values(), trees.node_values()))
        (c_sel, c_children, c_values, c_nodes), (p_sel, p_children, p_values, p_nodes) = results
        for (cp, ca), (pp, pa) in zip(c_sel, p_sel):
            np.testing.assert_array_equal(cp, pp)
            np.testing.assert_array_equal(ca, pa)
        assert c_children.keys() == p_children.keys()
        for key in c_children:  # bit-identical, not close
            assert c_children[key].dtype == p_children[key].dtype, key
            np.testing.assert_array_equal(c_children[key], p_children[key], err_msg=key)
        np.testing.assert_array_equal(c_values, p_values)
        np.testing.assert_array_equal(c_nodes, p_nodes)


@pytest.mark.parametrize("module", [ctree, ptree], ids=["ctree", "ptree"])
def test_sampled_root_read_outs_are_the_formulas_used_before(module):
    # policy_target = the learner's visits / visits.sum().clamp(1) and selected = the controller's
    # visits.argmax(1), bit for bit, ties (equal visits, padding) included.
    for S in (1, 3, 20):
        B, N, A, sampled_actions = 16, 2, 3, 6
        trees = module.SampledTrees(B, N, A, sampled_actions, S, seed=S, **TREE_KWARGS)
        avail_actions = np.ones((B, N, A), bool)
        trees.prepare(np.zeros(B, np.float32), np.full((B, N, A), 1.0 / A, np.float32), avail_actions, None, 0.0)
        for _ in range(S):
            trees.select()
            trees.expand(np.zeros(B, np.float32), np.zeros(B, np.float32), np.full((B, N, A), 1 / A, np.float32))
        children = trees.root_children()
        visits = torch.from_numpy(children["visits"].astype(np.float32))
        expected = visits / visits.sum(-1, keepdim=True).clamp(min=1.0)
        assert torch.equal(torch.from_numpy(children["policy_target"]), expected)
        np.testing.assert_array_equal(children["selected"], visits.argmax(1).numpy())


@pytest.mark.parametrize("module", [ctree, ptree], ids=["ctree", "ptree"])
def test_gumbel_arguments_are_checked(module):
    kwargs = dict(seed=0, **TREE_KWARGS)
    with pytest.raises(ValueError, match="root_search"):
        module.SampledTrees(1, 1, 2, 2, 2, root_search="beam", **kwargs)
    with pytest.raises(ValueError, match="gumbel_c_scale"):
        module.SampledTrees(1, 1, 2, 2, 2, root_search="gumbel", gumbel_c_scale=0.0, **kwargs)
    with pytest.raises(ValueError, match="gumbel_c_visit"):
        module.SampledTrees(1, 1, 2, 2, 2, root_search="gumbel", gumbel_c_visit=-1.0, **kwargs)
    root = (np.zeros(1, np.float32), np.full((1, 1, 2), 0.5, np.float32), np.ones((1, 1, 2), bool))
    noise = np.full((1, 1, 2), 0.5, np.float32)
    gumbel = module.SampledTrees(1, 1, 2, 2, 2, root_search="gumbel", **kwargs)
    with pytest.raises(ValueError, match="no Dirichlet noise"):
        gumbel.prepare(*root, noise, 0.25, gumbel_noise=True)
    with pytest.raises(ValueError, match="gumbel_noise must be a bool"):
        gumbel.prepare(*root, None, 0.0, gumbel_noise=1)
    sampled = module.SampledTrees(1, 1, 2, 2, 2, **kwargs)
    with pytest.raises(ValueError, match="needs root_search='gumbel'"):
        sampled.prepare(*root, None, 0.0, gumbel_noise=True)
    with pytest.raises(ValueError, match="before prepare"):  # nothing was prepared by the refused calls
        gumbel.select()


def test_driver_with_the_gumbel_root():
    from helpers.mazero_args import mazero_args
    from mcts.search import MCTSSearch, SearchConfig
    from modules.mazero.model import MAZeroModel, ModelConfig

    torch.manual_seed(1)
    N, A, D = 3, 5, 7
    args = mazero_args(N, A, num_simulations=10, sampled_actions=6, root_search="gumbel")
    config = SearchConfig.from_config(args)
    model = MAZeroModel(D, ModelConfig.from_config(args)).eval()
    with torch.no_grad():
        for head in (model.value_head, model.reward_head, model.policy_head):
            head.net[-1].weight.normal_(0, 0.5)
    g = torch.Generator().manual_seed(3)
    inputs = torch.randn(4, N, D, generator=g)
    avail_actions = (torch.rand(4, N, A, generator=g) > 0.4).numpy()
    avail_actions[..., 0] = True
    results = {}
    for name, cls in (("ptree", ptree.SampledTrees), ("ctree", ctree.SampledTrees)):
        results[name] = MCTSSearch(config, seed=5, tree_cls=cls).run(model, inputs, avail_actions, add_noise=True)
    c, p = results["ctree"], results["ptree"]
    for field in ("joint_actions", "visits", "q_values", "policy_target"):
        assert torch.equal(getattr(c.stats, field), getattr(p.stats, field)), field
    assert torch.equal(c.selected, p.selected)
    stats = c.stats
    assert (stats.visits.sum(1) == 10).all()
    torch.testing.assert_close(stats.policy_target.sum(1), torch.ones(4))
    for b in range(4):
        assert c.num_children[b] == 6  # distinct: K_s children whenever the available joint space has K_s
        assert len({tuple(row.tolist()) for row in stats.joint_actions[b]}) == 6
        assert all(avail_actions[b, i, stats.joint_actions[b, k, i]] for k in range(6) for i in range(N))
        # the winner is among the most visited
        assert stats.visits[b, c.selected[b]] == stats.visits[b].max()
    # without noise (evaluation) the children are the 6 most probable joint actions whatever the seed
    clean = [MCTSSearch(config, seed=seed).run(model, inputs, avail_actions, add_noise=False) for seed in (0, 1)]
    assert torch.equal(clean[0].stats.joint_actions, clean[1].stats.joint_actions)


@pytest.mark.parametrize("test_mode", [False, True])
def test_controller_acts_with_the_halving_winner(test_mode):
    # A search result whose winner is not the most visited child: the Gumbel controller takes the winner, in
    # self-play (before and after the first update) and in evaluation; the sampled one the most visited child.
    from controllers.mazero_controller import MAZeroMAC
    from helpers.mazero_args import mazero_args
    from mcts.search import SearchResult, SearchStats

    N, A, OBS, sampled_actions = 2, 3, 4, 3
    joint = torch.tensor([[[0, 0], [1, 2], [2, 1]]])
    stats = SearchStats(joint_actions=joint, visits=torch.tensor([[1.0, 3.0, 3.0]]),
                        q_values=torch.zeros(1, sampled_actions), network_value=torch.zeros(1),
                        policy_target=torch.tensor([[0.2, 0.3, 0.5]]))
    batch = {"obs": torch.zeros(1, 2, N, OBS), "actions_onehot": torch.zeros(1, 2, N, A),
             "avail_actions": torch.ones(1, 2, N, A, dtype=torch.int)}
    for root_search, expected in (("gumbel", [2, 1]), ("sampled", [1, 2])):
        args = mazero_args(N, A, num_simulations=7, sampled_actions=sampled_actions, root_search=root_search)
        mac = MAZeroMAC({"obs": {"vshape": OBS}}, {"agents": N}, args)
        result = SearchResult(stats=stats, root_values=np.zeros(1), policy_logits=None,
                              num_children=np.array([sampled_actions]),
                              selected=torch.tensor([2]) if root_search == "gumbel" else None)
        mac.search.run = lambda *a, **k: result
        for started in (False, True):
            mac.set_training_started(started)
            chosen = mac.select_actions(batch, 0, t_env=0, test_mode=test_mode)
            actions = chosen if test_mode else chosen[0]
            if root_search == "gumbel" or test_mode:
                assert actions[0].tolist() == expected
            if not test_mode:
                assert torch.equal(chosen[1]["policy_target"], stats.policy_target)


@pytest.mark.subprocess
def test_a_gumbel_run_trains_end_to_end_on_the_matrix_game(tmp_path):
    # Self-play, reanalysis (half the batch) and noiseless-search evaluation, all with the Gumbel root.
    from helpers.harness_helpers import load_json, run_main, sacred_runs

    tiny = ["runner=episode", "batch_size_run=1", "t_max=80", "batch_transitions=8", "num_simulations=4",
            "sampled_actions=3", "reanalyse_ratio=0.5", "test_interval=40", "test_nepisode=2", "log_interval=40",
            "learner_log_interval=0", "runner_log_interval=40", "latent_dim=16", "representation_hidden=[16]",
            "dynamics_hidden=[16]", "attention_heads=2", "attention_ff_dim=16", "projection_hidden=16",
            "projection_dim=16", "predictor_hidden=8", "root_search=gumbel"]
    run_main(["--config=mazero", "--env-config=matrix", "with"] + tiny, tmp_path)
    (run_dir,) = sacred_runs(tmp_path, "mazero", "matrix")
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    assert load_json(run_dir, "config.json")["root_search"] == "gumbel"
    info = load_json(run_dir, "info.json")
    assert info["updates"][-1] >= 20
    for key in ("loss", "policy_loss", "test_return_mean"):
        assert all(np.isfinite(v) for v in info[key]), key
