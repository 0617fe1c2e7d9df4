"""The compiled tree (mcts.ctree) against its pure-Python twin (mcts.ptree): same seed and inputs, same search."""
import numpy as np
import pytest

import mcts
from mcts import ptree

ctree = mcts.ctree
assert ctree is not None, "mcts.ctree is not built: run `pip install -e .` or `python setup.py build_ext --inplace`"


def random_policy(rng, shape, ties):
    if ties:  # uniform rows make exact pUCT score ties, exercising the PRNG tie-break
        return np.full(shape, 1.0 / shape[-1], dtype=np.float32)
    logits = rng.normal(scale=2.0, size=shape)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs[rng.random(shape) < 0.1] = 0.0  # exact zeros must never be sampled
    probs[..., 0] += 1e-3
    return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


def random_case(rng):
    B, N, A, sampled_actions = (int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 7)),
                                int(rng.integers(1, 9)))
    S = int(rng.integers(1, 31))
    kwargs = dict(os_rho=float(rng.choice([0.0, 0.25, 0.75, 1.0, rng.random()])),
                  os_lambda=float(rng.choice([0.0, 0.8, 1.0, rng.random()])),
                  gamma=float(rng.choice([0.99, 1.0, rng.random()])),
                  value_delta_min=float(rng.choice([0.01, 1.0])),
                  seed=int(rng.integers(0, 2**63)), use_os_lambda=bool(rng.random() < 0.85))
    ties = bool(rng.random() < 0.25)
    avail_actions = rng.random((B, N, A)) < 0.6
    avail_actions[np.arange(B)[:, None], np.arange(N)[None, :], rng.integers(0, A, size=(B, N))] = True
    noise = rng.dirichlet([0.3] * A, size=(B, N)).astype(np.float32) if rng.random() < 0.5 else None
    # Coarse values make exact advantage ties too.
    values = (lambda size: (rng.integers(-2, 3, size=size) * 0.5).astype(np.float32)) if ties else \
        (lambda size: rng.normal(size=size).astype(np.float32))
    steps = [(values(B), values(B), random_policy(rng, (B, N, A), ties)) for _ in range(S)]
    root = (values(B), random_policy(rng, (B, N, A), ties), avail_actions, noise,
            float(rng.choice([0.0, 0.25, 1.0])))
    return (B, N, A, sampled_actions, S), kwargs, root, steps


def run(module, dims, kwargs, root, steps):
    trees = module.SampledTrees(*dims, **kwargs)
    trees.prepare(*root)
    selections = []
    for values, rewards, probs in steps:
        selections.append(trees.select())
        trees.expand(values, rewards, probs)
    return trees, selections


def assert_same_search(c_trees, c_sel, p_trees, p_sel):
    for j, ((cp, ca), (pp, pa)) in enumerate(zip(c_sel, p_sel)):
        assert cp.dtype == pp.dtype == np.int32 and ca.dtype == pa.dtype == np.int32
        np.testing.assert_array_equal(cp, pp, err_msg=f"parent_index differs at simulation {j}")
        np.testing.assert_array_equal(ca, pa, err_msg=f"actions differ at simulation {j}")
    np.testing.assert_allclose(c_trees.root_values(), p_trees.root_values(), rtol=0, atol=1e-5)
    c_children, p_children = c_trees.root_children(), p_trees.root_children()
    assert c_children.keys() == p_children.keys()
    for key in c_children:
        assert c_children[key].dtype == p_children[key].dtype, key
        np.testing.assert_allclose(c_children[key], p_children[key], rtol=0, atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(c_trees.marginal_visits(), p_trees.marginal_visits())
    np.testing.assert_allclose(c_trees.node_values(), p_trees.node_values(), rtol=0, atol=1e-5)
    for c_bound, p_bound in zip(c_trees.advantage_bounds(), p_trees.advantage_bounds()):
        np.testing.assert_allclose(c_bound, p_bound, rtol=0, atol=1e-5)
    for b in range(c_trees.num_roots):
        for node in range(len(c_sel) + 1):
            for c_part, p_part in zip(c_trees.node_children(b, node), p_trees.node_children(b, node)):
                assert c_part.dtype == p_part.dtype
                np.testing.assert_array_equal(c_part, p_part, err_msg=f"node_children({b}, {node})")


def test_ctree_matches_ptree_on_random_batched_searches():
    rng = np.random.default_rng(20240517)
    tie_breaks = 0
    for _ in range(220):
        dims, kwargs, root, steps = random_case(rng)
        c_trees, c_sel = run(ctree, dims, kwargs, root, steps)
        p_trees, p_sel = run(ptree, dims, kwargs, root, steps)
        assert_same_search(c_trees, c_sel, p_trees, p_sel)
        tie_breaks += np.array_equal(root[1], np.full_like(root[1], 1.0 / dims[2]))
    assert tie_breaks > 20


@pytest.mark.parametrize("module", [ctree, ptree], ids=["ctree", "ptree"])
def test_same_seed_same_search_and_reset_reseeds(module):
    rng = np.random.default_rng(3)
    dims, kwargs, root, steps = random_case(rng)
    first, sel_first = run(module, dims, kwargs, root, steps)
    second, sel_second = run(module, dims, kwargs, root, steps)
    assert_same_search(first, sel_first, second, sel_second)
    # Reusing one object: reset(seed) restarts the streams, so the search repeats exactly.
    first.reset(seed=kwargs["seed"])
    first.prepare(*root)
    again = []
    for values, rewards, probs in steps:
        again.append(first.select())
        first.expand(values, rewards, probs)
    assert_same_search(first, again, second, sel_second)


def test_different_seeds_sample_different_children():
    B, N, A, sampled_actions = 8, 3, 6, 6
    probs = np.full((B, N, A), 1.0 / A, dtype=np.float32)
    avail_actions = np.ones((B, N, A), dtype=bool)
    actions = []
    for seed in (0, 1):
        trees = ctree.SampledTrees(B, N, A, sampled_actions, 4, os_rho=0.25, os_lambda=0.8, gamma=0.99, seed=seed)
        trees.prepare(np.zeros(B, np.float32), probs, avail_actions, None, 0.0)
        actions.append(trees.root_children()["actions"])
    assert not np.array_equal(actions[0], actions[1])
    # Trees within one batch get their own streams (seeded by root index).
    assert len({actions[0][b].tobytes() for b in range(B)}) == B


def test_pcg32_reference_stream():
    # O'Neill's pcg32-demo: pcg32_srandom_r(42, 54) then pcg32_random_r.
    rng = ptree.Pcg32(42, 54)
    assert [rng.next_u32() for _ in range(6)] == [0xA15C02B7, 0x7B47F409, 0xBA1D3330, 0x83D2F293, 0xBFA4784B,
                                                   0xCBED606E]


def test_deep_chain_grows_the_arena_and_matches_ptree():
    # K_s = 1 and one action: every node has one child, so the tree is a chain of depth S whose root receives a
    # return at every depth; the regions move many times and the arena must grow well past its initial size.
    S = 300
    rng = np.random.default_rng(9)
    root = (np.float32([0.5]), np.ones((1, 1, 1), np.float32), np.ones((1, 1, 1), bool), None, 0.0)
    steps = [(rng.normal(size=1).astype(np.float32), rng.normal(size=1).astype(np.float32),
              np.ones((1, 1, 1), np.float32)) for _ in range(S)]
    kwargs = dict(os_rho=0.5, os_lambda=0.9, gamma=0.97, seed=1)
    c_trees, c_sel = run(ctree, (1, 1, 1, 1, S), kwargs, root, steps)
    p_trees, p_sel = run(ptree, (1, 1, 1, 1, S), kwargs, root, steps)
    assert_same_search(c_trees, c_sel, p_trees, p_sel)
    assert [int(p[0]) for p, _ in c_sel] == list(range(S))
