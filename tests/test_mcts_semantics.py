"""Search semantics of both trees against brute force from the definitions in docs/mcts.md, "Semantics": OS(lambda)
values, root forcing, the min-max normaliser, the pUCT rule, sampling and the availability mask."""
import math

import numpy as np
import pytest

import mcts
from mcts import ptree

assert mcts.ctree is not None, "mcts.ctree is not built: run `pip install -e .`"
TREES = pytest.mark.parametrize("module", [mcts.ctree, ptree], ids=["ctree", "ptree"])


def softmax(rng, shape, scale=1.5):
    logits = rng.normal(scale=scale, size=shape)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


class Recorder:
    """Runs a search and rebuilds every tree's structure from what select returned and expand was given."""

    def __init__(self, module, B, N, A, sampled_actions, S, seed=0, **kwargs):
        self.trees = module.SampledTrees(B, N, A, sampled_actions, S, seed=seed, **kwargs)
        self.B, self.N, self.A, self.S = B, N, A, S
        self.gamma = kwargs["gamma"]
        self.parent = [[-1] for _ in range(B)]
        self.v_hat = [[] for _ in range(B)]
        self.reward = [[0.0] for _ in range(B)]

    def prepare(self, values, probs, avail_actions=None, noise=None, noise_eps=0.0):
        if avail_actions is None:
            avail_actions = np.ones((self.B, self.N, self.A), dtype=bool)
        self.trees.prepare(values, probs, avail_actions, noise, noise_eps)
        for b in range(self.B):
            self.v_hat[b].append(float(values[b]))

    def step(self, values, rewards, probs):
        parents, actions = self.trees.select()
        self.trees.expand(values, rewards, probs)
        for b in range(self.B):
            self.parent[b].append(int(parents[b]))
            self.v_hat[b].append(float(values[b]))
            self.reward[b].append(float(rewards[b]))
        return parents, actions

    def random_step(self, rng):
        """One simulation with random leaf values, rewards and policies."""
        return self.step(rng.normal(size=self.B).astype(np.float32), rng.normal(size=self.B).astype(np.float32),
                         softmax(rng, (self.B, self.N, self.A)))

    def children(self, b, node):
        return [c for c in range(len(self.parent[b])) if self.parent[b][c] == node]

    def returns_by_depth(self, b, node):
        """U_d(node) for every d: one return per descendant at relative depth d (paper Eq. 5)."""
        out = {0: [self.v_hat[b][node]]}
        for child in self.children(b, node):
            for d, rets in self.returns_by_depth(b, child).items():
                out.setdefault(d + 1, []).extend(self.reward[b][child] + self.gamma * x for x in rets)
        return out

    def advantages(self, b, value_of):
        return [self.reward[b][n] + self.gamma * value_of(b, n) - self.v_hat[b][self.parent[b][n]]
                for n in range(1, len(self.parent[b]))]


def os_lambda(returns_by_depth, rho, lam):
    """V^rho_lambda (Eq. 7): top ceil((1 - rho)|U_d|) (at least 1) of each depth, weighted by lam^d."""
    num = den = 0.0
    for d, rets in returns_by_depth.items():
        keep = max(1, math.ceil((1 - rho) * len(rets)))
        top = sorted(rets, reverse=True)[:keep]
        num += lam**d * sum(top)
        den += lam**d * len(top)
    return num / den


def random_search(module, rng, rho, lam, use_os_lambda=True, B=3, N=2, A=3, sampled_actions=4, S=20,
                  check_every_step=None):
    """A search of random inputs with OS(lambda)'s rho (os_rho) and lambda (os_lambda), recorded."""
    rec = Recorder(module, B, N, A, sampled_actions, S, seed=int(rng.integers(1 << 30)), os_rho=rho, os_lambda=lam,
                   gamma=0.9, use_os_lambda=use_os_lambda)
    rec.prepare(rng.normal(size=B).astype(np.float32), softmax(rng, (B, N, A)))
    for _ in range(S):
        rec.step(rng.normal(size=B).astype(np.float32), rng.normal(size=B).astype(np.float32),
                 softmax(rng, (B, N, A)))
        if check_every_step is not None:
            check_every_step(rec)
    return rec


@TREES
def test_chain_root_value_is_lambda_weighted_mean_of_depth_returns(module):
    S, gamma, lam = 6, 0.9, 0.8
    rng = np.random.default_rng(1)
    values, rewards = rng.normal(size=S + 1), rng.normal(size=S + 1)
    for rho in (0.0, 0.75):
        rec = Recorder(module, 1, 1, 1, 3, S, os_rho=rho, os_lambda=lam, gamma=gamma)
        rec.prepare(np.float32([values[0]]), np.ones((1, 1, 1), np.float32))
        for j in range(1, S + 1):
            parents, actions = rec.step(np.float32([values[j]]), np.float32([rewards[j]]), np.ones((1, 1, 1),
                                                                                                   np.float32))
            assert parents[0] == j - 1 and actions[0, 0] == 0  # a chain: each leaf extends the previous one
        v32, r32 = values.astype(np.float32).astype(float), rewards.astype(np.float32).astype(float)
        x = [sum(gamma**k * r32[k + 1] for k in range(d)) + gamma**d * v32[d] for d in range(S + 1)]
        expected = sum(lam**d * x[d] for d in range(S + 1)) / sum(lam**d for d in range(S + 1))
        assert rec.trees.root_values()[0] == pytest.approx(expected, abs=1e-5)


@TREES
@pytest.mark.parametrize("rho,kept", [(0.0, 8), (0.25, 6), (0.75, 2)])
def test_wide_root_keeps_top_quantile_after_root_forcing(module, rho, kept):
    # 3 agents x 2 actions = 8 joint actions; 200 uniform draws hit all of them.
    lam, gamma, root_value = 0.8, 0.9, 0.3
    rec = Recorder(module, 1, 3, 2, 200, 8, os_rho=rho, os_lambda=lam, gamma=gamma)
    rec.prepare(np.float32([root_value]), np.full((1, 3, 2), 0.5, np.float32))
    children = rec.trees.root_children()
    assert children["num_children"][0] == 8
    expected_actions = [[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)]  # lexicographic order
    np.testing.assert_array_equal(children["actions"][0, :8], expected_actions)
    assert (children["actions"][0, 8:] == -1).all()
    returns = np.linspace(0.0, 0.99, 8).astype(np.float32)[np.random.default_rng(0).permutation(8)]
    for j in range(8):  # reward = the depth-1 return, leaf value 0
        parents, actions = rec.step(np.float32([0.0]), returns[j:j + 1], np.full((1, 3, 2), 0.5, np.float32))
        assert parents[0] == 0
        np.testing.assert_array_equal(actions[0], expected_actions[j])
    top = np.sort(returns.astype(float))[::-1][:kept]
    expected = (np.float32(root_value) + lam * top.sum()) / (1 + lam * kept)
    assert rec.trees.root_values()[0] == pytest.approx(expected, abs=1e-6)
    children = rec.trees.root_children()
    np.testing.assert_array_equal(children["visits"][0, :8], np.ones(8))
    np.testing.assert_allclose(children["q_values"][0, :8], returns, atol=1e-6)


@TREES
@pytest.mark.parametrize("rho,lam", [(0.25, 0.8), (0.75, 0.5), (0.5, 1.0), (0.0, 0.8), (1.0, 0.8), (0.25, 0.0)])
def test_every_node_value_matches_brute_force_os_lambda(module, rho, lam):
    def check(rec):
        node_values = rec.trees.node_values()
        for b in range(rec.B):
            for node in range(len(rec.parent[b])):
                expected = os_lambda(rec.returns_by_depth(b, node), rho, lam)
                assert node_values[b, node] == pytest.approx(expected, rel=1e-5, abs=1e-5), (b, node)

    random_search(module, np.random.default_rng(11), rho, lam, check_every_step=check)


@TREES
def test_special_cases_of_rho_and_lambda(module):
    rng = np.random.default_rng(5)
    cases = {
        # rho = 0: the lambda-weighted mean of all returns
        (0.0, 0.7): lambda u: (sum(0.7**d * sum(r) for d, r in u.items()) / sum(0.7**d * len(r) for d, r in u.items())),
        # rho -> 1: the lambda-weighted per-depth max
        (1.0, 0.7): lambda u: sum(0.7**d * max(r) for d, r in u.items()) / sum(0.7**d for d in u),
        # lambda = 0: the node's own predicted value
        (0.25, 0.0): lambda u: u[0][0],
    }
    for (rho, lam), formula in cases.items():
        rec = random_search(module, rng, rho, lam)
        node_values = rec.trees.node_values()
        for b in range(rec.B):
            for node in range(rec.S + 1):
                assert node_values[b, node] == pytest.approx(formula(rec.returns_by_depth(b, node)), abs=1e-5)


@TREES
def test_mean_backup_without_os_lambda(module):
    rec = random_search(module, np.random.default_rng(6), rho=0.75, lam=0.5, use_os_lambda=False)
    node_values = rec.trees.node_values()
    for b in range(rec.B):
        for node in range(rec.S + 1):
            rets = [x for r in rec.returns_by_depth(b, node).values() for x in r]
            assert node_values[b, node] == pytest.approx(np.mean(rets), abs=1e-5)
    # It differs from OS(lambda) on the same inputs: the switch really changes the backup.
    rec_os = random_search(module, np.random.default_rng(6), rho=0.75, lam=0.5, use_os_lambda=True)
    assert not np.allclose(rec_os.trees.root_values(), rec.trees.root_values())


@TREES
def test_root_forcing_visits_each_sampled_child_once_in_order(module):
    rng = np.random.default_rng(2)
    B, N, A, sampled_actions = 4, 3, 4, 10
    rec = Recorder(module, B, N, A, sampled_actions, 30, os_rho=0.25, os_lambda=0.8, gamma=0.99)
    rec.prepare(rng.normal(size=B).astype(np.float32), softmax(rng, (B, N, A)))
    children = rec.trees.root_children()
    num_children = children["num_children"]
    assert (num_children > 1).all()
    for j in range(30):
        parents, actions = rec.step(rng.normal(size=B).astype(np.float32), rng.normal(size=B).astype(np.float32),
                                    softmax(rng, (B, N, A)))
        for b in range(B):
            if j < num_children[b]:
                assert parents[b] == 0
                np.testing.assert_array_equal(actions[b], children["actions"][b, j])
                if j == num_children[b] - 1:  # all forced visits done: every root child exactly once
                    visits = rec.trees.root_children()["visits"][b, :num_children[b]]
                    np.testing.assert_array_equal(visits, np.ones(num_children[b]))
    visits = rec.trees.root_children()["visits"]
    np.testing.assert_array_equal(visits.sum(1), np.full(B, 30))


@TREES
def test_min_max_normaliser_tracks_current_advantages_of_all_non_root_edges(module):
    rho, lam = 0.25, 0.8

    def check(rec):
        lo, hi = rec.trees.advantage_bounds()
        for b in range(rec.B):
            adv = rec.advantages(b, lambda b, n: os_lambda(rec.returns_by_depth(b, n), rho, lam))
            assert lo[b] == pytest.approx(min(adv), abs=1e-5)
            assert hi[b] == pytest.approx(max(adv), abs=1e-5)

    random_search(module, np.random.default_rng(3), rho, lam, S=30, check_every_step=check)


def _puct_recorder(module, rng, B, N, A, sampled_actions, S):
    """A prepared Recorder with fixed pUCT constants, and the constants (c_init, c_base, delta, gamma)."""
    constants = (1.25, 19652.0, 0.01, 0.95)
    rec = Recorder(module, B, N, A, sampled_actions, S, os_rho=0.25, os_lambda=0.8, gamma=constants[3],
                   pb_c_init=constants[0], pb_c_base=constants[1], value_delta_min=constants[2])
    rec.prepare(rng.normal(size=B).astype(np.float32), softmax(rng, (B, N, A)))
    return rec, constants


@TREES
def test_root_choice_after_forcing_is_argmax_of_advantage_puct(module):
    rng = np.random.default_rng(4)
    B, N, A, sampled_actions, S = 6, 2, 4, 6, 40
    rec, (c_init, c_base, delta, gamma) = _puct_recorder(module, rng, B, N, A, sampled_actions, S)
    checked = 0
    for _ in range(S):
        children = rec.trees.root_children()
        lo, hi = rec.trees.advantage_bounds()
        parents, actions = rec.random_step(rng)
        for b in range(B):
            n_children = children["num_children"][b]
            visits = children["visits"][b, :n_children].astype(float)
            if (visits == 0).any():
                continue  # still forcing
            adv = children["q_values"][b, :n_children] - rec.v_hat[b][0]
            q = np.clip((adv - lo[b]) / max(delta, hi[b] - lo[b]), 0, 1)
            n_parent = visits.sum()
            u = children["priors"][b, :n_children] * math.sqrt(n_parent) / (1 + visits) * (
                c_init + math.log((n_parent + c_base + 1) / c_base))
            scores = q + u
            if np.sort(scores)[-1] - np.sort(scores)[-2] < 1e-4:
                continue  # float32 outputs cannot resolve near-ties
            # After forcing every root child is expanded, so the path goes through one; root forcing created
            # root child slot c at simulation c, i.e. at pool index c + 1.
            node = int(parents[b])
            assert node != 0
            while rec.parent[b][node] != 0:
                node = rec.parent[b][node]
            assert node - 1 == int(np.argmax(scores))
            checked += 1
    assert checked > 50



def _subtree_sizes(parent):
    sizes = [1] * len(parent)
    for node in range(len(parent) - 1, 0, -1):  # children are created after their parents
        sizes[parent[node]] += sizes[node]
    return sizes


def test_interior_choices_are_argmax_of_advantage_puct():
    # The pUCT rule at nodes below the root, computed here from the recorded tree (visits = subtree sizes,
    # A = r + gamma V(child) - v_hat(node), 0 unvisited) and the read-outs node_values / advantage_bounds /
    # node_children (the children's priors beta_hat). On ptree only: ctree = ptree is tested in
    # test_mcts_equivalence.py.
    rng = np.random.default_rng(7)
    B, N, A, sampled_actions, S = 4, 2, 3, 4, 60
    rec, (c_init, c_base, delta, gamma) = _puct_recorder(ptree, rng, B, N, A, sampled_actions, S)
    checked = 0
    for _ in range(S):
        values = rec.trees.node_values()
        lo, hi = rec.trees.advantage_bounds()
        sizes = [_subtree_sizes(parent) for parent in rec.parent]
        parents, _ = rec.random_step(rng)
        for b in range(B):
            path = [len(rec.parent[b]) - 1]  # the new leaf, then its ancestors
            while path[-1] != 0:
                path.append(rec.parent[b][path[-1]])
            path.reverse()
            for node, chosen in zip(path[1:-1], path[2:]):  # interior nodes and the child each one chose
                edge_children, priors = rec.trees.node_children(b, node)
                new_leaf = len(sizes[b])  # created by this step: unvisited when the choice was made
                children = [-1 if child == new_leaf else int(child) for child in edge_children]
                n_parent = sizes[b][node] - 1
                scores = []
                for prior, child in zip(priors, children):
                    visits = sizes[b][child] if child >= 0 else 0
                    adv = (rec.reward[b][child] + gamma * float(values[b, child]) - rec.v_hat[b][node]
                           if child >= 0 else 0.0)
                    q = min(1.0, max(0.0, (adv - lo[b]) / max(delta, hi[b] - lo[b])))
                    scores.append(q + prior * math.sqrt(n_parent) / (1 + visits)
                                  * (c_init + math.log((n_parent + c_base + 1) / c_base)))
                if len(scores) > 1 and np.sort(scores)[-1] - np.sort(scores)[-2] < 1e-4:
                    continue  # float32 read-outs cannot resolve near-ties
                assert edge_children[int(np.argmax(scores))] == chosen
                checked += 1
    assert checked > 30


@TREES
def test_avail_actions_mask_only_the_root_and_zero_mass_is_never_sampled(module):
    B, N, A, sampled_actions, S = 2, 2, 4, 8, 25
    avail_actions = np.ones((B, N, A), dtype=bool)
    avail_actions[:, :, 3] = False
    root_probs = np.full((B, N, A), 0.25, np.float32)
    inner_probs = np.zeros((B, N, A), np.float32)
    inner_probs[:, :, 2:] = 0.5  # only actions 2 and 3 have mass inside the tree; 3 is unavailable at the root
    rec = Recorder(module, B, N, A, sampled_actions, S, os_rho=0.25, os_lambda=0.8, gamma=0.99)
    rec.prepare(np.zeros(B, np.float32), root_probs, avail_actions)
    root_actions = rec.trees.root_children()["actions"]
    assert not (root_actions == 3).any()
    inner_actions = []
    for _ in range(S):
        parents, actions = rec.step(np.zeros(B, np.float32), np.zeros(B, np.float32), inner_probs)
        inner_actions.extend(actions[parents != 0].ravel())
    assert set(inner_actions) == {2, 3}


@TREES
def test_root_children_follow_the_masked_noisy_prior(module):
    # beta = normalise(m * ((1 - eps) * pi~ + eps * eta~)), pi~ = normalise(m * pi + 1e-4 m) (docs/mcts.md,
    # "Semantics"); with one agent, beta_hat over K_s draws estimates beta.
    sampled_actions, eps = 20000, 0.25
    pi = np.float32([[[0.1, 0.6, 0.0, 0.3]]])
    eta = np.float32([[[0.0, 0.0, 0.5, 0.5]]])
    avail_actions = np.array([[[True, True, True, False]]])
    trees = module.SampledTrees(1, 1, 4, sampled_actions, 1, os_rho=0.25, os_lambda=0.8, gamma=0.99, seed=3)
    trees.prepare(np.zeros(1, np.float32), pi, avail_actions, eta, eps)
    children = trees.root_children()
    m = avail_actions[0, 0].astype(float)
    pi_t = (pi[0, 0] * m + 1e-4 * m) / (pi[0, 0] * m + 1e-4 * m).sum()
    eta_t = (eta[0, 0] * m + 1e-4 * m) / (eta[0, 0] * m + 1e-4 * m).sum()
    beta = m * ((1 - eps) * pi_t + eps * eta_t)
    beta /= beta.sum()
    beta_hat = np.zeros(4)
    for c in range(children["num_children"][0]):
        beta_hat[children["actions"][0, c, 0]] = children["beta_hat"][0, c]
    np.testing.assert_allclose(beta_hat, beta, atol=4 * np.sqrt(0.25 / sampled_actions))
    np.testing.assert_array_equal(children["priors"], children["beta_hat"])  # tau = 1
    assert children["priors"][0].sum() == pytest.approx(1.0, abs=1e-5)


@TREES
def test_marginal_visits_sum_root_child_visits_per_agent_action(module):
    rec = random_search(module, np.random.default_rng(8), 0.25, 0.8, B=2, N=3, A=4, sampled_actions=6, S=25)
    children = rec.trees.root_children()
    expected = np.zeros((2, 3, 4), dtype=np.int64)
    for b in range(2):
        for c in range(children["num_children"][b]):
            for i in range(3):
                expected[b, i, children["actions"][b, c, i]] += children["visits"][b, c]
    np.testing.assert_array_equal(rec.trees.marginal_visits(), expected)
    assert (rec.trees.marginal_visits().sum(2) == 25).all()
