"""Bad input raises ValueError (never crashes), in both trees; the package falls back to ptree with a warning."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mcts
from mcts import ptree

assert mcts.ctree is not None, "mcts.ctree is not built: run `pip install -e .`"
TREES = pytest.mark.parametrize("module", [mcts.ctree, ptree], ids=["ctree", "ptree"])
B, N, A, SAMPLED_ACTIONS, S = 3, 2, 4, 3, 5
KW = dict(os_rho=0.25, os_lambda=0.8, gamma=0.99)


def valid_root(rng):
    probs = rng.random((B, N, A)).astype(np.float32)
    return dict(values=rng.normal(size=B).astype(np.float32), probs=probs / probs.sum(-1, keepdims=True),
                avail_actions=np.ones((B, N, A), dtype=bool),
                noise=rng.dirichlet([0.3] * A, size=(B, N)).astype(np.float32), noise_eps=0.25)


def valid_leaf(rng):
    probs = rng.random((B, N, A)).astype(np.float32) + 0.01
    return dict(values=rng.normal(size=B).astype(np.float32), rewards=rng.normal(size=B).astype(np.float32),
                probs=probs / probs.sum(-1, keepdims=True))


def with_entry(arr, value, index=None):
    out = arr.copy()
    out[index if index is not None else tuple(i // 2 for i in arr.shape)] = value
    return out


@TREES
@pytest.mark.parametrize("kwargs,match", [
    (dict(num_roots=0), "num_roots"), (dict(n_agents=0), "n_agents"), (dict(n_actions=40000), "n_actions"),
    (dict(sampled_actions=0), "sampled_actions"), (dict(num_simulations=0), "num_simulations"),
    (dict(num_roots=2.5), "num_roots"), (dict(os_rho=1.5), "os_rho"), (dict(os_lambda=float("nan")), "os_lambda"),
    (dict(gamma=-0.1), "gamma"), (dict(pb_c_base=0), "pb_c_base"), (dict(value_delta_min=0.0), "value_delta_min"),
    (dict(seed=-1), "seed"), (dict(seed=2**64), "seed"), (dict(os_rho="x"), "os_rho"),
    (dict(num_simulations=70000), "too large"),
])
def test_bad_constructor_arguments(module, kwargs, match):
    args = dict(num_roots=B, n_agents=N, n_actions=A, sampled_actions=SAMPLED_ACTIONS, num_simulations=S, **KW)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        module.SampledTrees(**args)


@TREES
def test_num_threads_is_gone(module):
    """The OpenMP option was removed (docs/mcts.md, "Threads"): passing it is an error, not silently ignored."""
    with pytest.raises(TypeError, match="num_threads"):
        module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, num_threads=2, **KW)


@TREES
@pytest.mark.parametrize("name,bad,match", [
    ("values", lambda r: with_entry(r["values"], np.nan), "values contains NaN"),
    ("values", lambda r: with_entry(r["values"], np.inf), "values contains NaN"),
    ("values", lambda r: r["values"].astype(np.float64), "dtype float32"),
    ("values", lambda r: r["values"][:2], "shape"),
    ("probs", lambda r: with_entry(r["probs"], np.nan), "probs contains NaN"),
    ("probs", lambda r: with_entry(r["probs"], -np.inf), "probs contains NaN"),
    ("probs", lambda r: with_entry(r["probs"], -0.1), "negative"),
    ("probs", lambda r: np.zeros((B, N + 1, A), np.float32), "shape"),  # more agents than the tree has
    ("probs", lambda r: r["probs"].tolist(), "dtype float32"),
    ("probs", lambda r: None, "dtype float32"),
    ("avail_actions", lambda r: with_entry(r["avail_actions"], False, (1, 1, slice(None))),
     "no available action for tree 1, agent 1"),
    ("avail_actions", lambda r: r["avail_actions"].astype(np.int64), "dtype bool"),
    ("noise", lambda r: with_entry(r["noise"], np.nan), "noise contains NaN"),
    ("noise", lambda r: with_entry(r["noise"], -1.0), "noise contains negative"),
    ("noise", lambda r: r["noise"][..., :2], "shape"),
    ("noise_eps", lambda r: 1.5, "noise_eps"),
    ("noise_eps", lambda r: float("nan"), "noise_eps"),
    ("noise_eps", lambda r: "x", "noise_eps"),
])
def test_bad_prepare_inputs(module, name, bad, match):
    rng = np.random.default_rng(0)
    trees = module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    root = valid_root(rng)
    root[name] = bad(root)
    with pytest.raises(ValueError, match=match):
        trees.prepare(**root)
    with pytest.raises(ValueError, match="before prepare"):  # the failed call left the object unprepared
        trees.select()


@TREES
@pytest.mark.parametrize("name,bad,match", [
    ("values", lambda r: with_entry(r["values"], np.nan), "values contains NaN"),
    ("rewards", lambda r: with_entry(r["rewards"], np.inf), "rewards contains NaN"),
    ("rewards", lambda r: r["rewards"].reshape(B, 1), "shape"),
    ("probs", lambda r: with_entry(r["probs"], np.nan), "probs contains NaN"),
    ("probs", lambda r: with_entry(r["probs"], -1e-3), "negative"),
    ("probs", lambda r: with_entry(r["probs"], 0.0, (2, 0, slice(None))), "tree 2, agent 0 sums to 0"),
    ("probs", lambda r: r["probs"].astype(np.float16), "dtype float32"),
    ("probs", lambda r: np.zeros((B, N, A + 1), np.float32), "shape"),
])
def test_bad_expand_inputs_raise_and_leave_the_search_intact(module, name, bad, match):
    rng = np.random.default_rng(1)
    root, leaves = valid_root(rng), [valid_leaf(rng) for _ in range(S)]
    reference = module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    trees = module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    for t in (reference, trees):
        t.prepare(**root)
    for j, leaf in enumerate(leaves):
        reference.select()
        reference.expand(**leaf)
        trees.select()
        if j == 2:
            broken = dict(leaf)
            broken[name] = bad(leaf)
            with pytest.raises(ValueError, match=match):
                trees.expand(**broken)
        trees.expand(**leaf)  # the retry continues the same search
    np.testing.assert_array_equal(trees.root_values(), reference.root_values())
    np.testing.assert_array_equal(trees.root_children()["visits"], reference.root_children()["visits"])


@TREES
def test_call_order_errors(module):
    rng = np.random.default_rng(2)
    trees = module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    leaf = valid_leaf(rng)
    with pytest.raises(ValueError, match="before prepare"):
        trees.select()
    with pytest.raises(ValueError, match="without a preceding select"):
        trees.expand(**leaf)
    with pytest.raises(ValueError, match="before prepare"):
        trees.root_values()
    trees.prepare(**valid_root(rng))
    with pytest.raises(ValueError, match="without a preceding select"):
        trees.expand(**leaf)
    trees.select()
    with pytest.raises(ValueError, match="twice"):
        trees.select()
    trees.expand(**leaf)
    for _ in range(S - 1):
        trees.select()
        trees.expand(**leaf)
    with pytest.raises(ValueError, match="num_simulations=5"):
        trees.select()
    trees.reset()
    with pytest.raises(ValueError, match="before prepare"):
        trees.select()


@TREES
def test_node_children_checks_its_indices(module):
    trees = module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    with pytest.raises(ValueError, match="before prepare"):
        trees.node_children(0, 0)
    trees.prepare(**valid_root(np.random.default_rng(6)))
    for b, node, match in [(B, 0, "num_roots"), (-1, 0, "b must be"), (0, 1, "does not exist yet"),
                           (0, 0.5, "node must be an integer")]:
        with pytest.raises(ValueError, match=match):
            trees.node_children(b, node)
    children, priors = trees.node_children(0, 0)  # the root: every child sampled, none expanded yet
    assert children.shape == priors.shape and (children == -1).all()
    assert priors.sum() == pytest.approx(1.0)


@TREES
def test_many_agents(module):
    rng = np.random.default_rng(3)
    n_agents, n_actions = 40, 6
    trees = module.SampledTrees(2, n_agents, n_actions, 8, 10, **KW)
    probs = np.full((2, n_agents, n_actions), 1 / n_actions, np.float32)
    trees.prepare(np.zeros(2, np.float32), probs, np.ones((2, n_agents, n_actions), bool), None, 0.0)
    for _ in range(10):
        parents, actions = trees.select()
        assert actions.shape == (2, n_agents)
        trees.expand(rng.normal(size=2).astype(np.float32), np.zeros(2, np.float32), probs)
    assert trees.root_children()["actions"].shape == (2, 8, n_agents)


def test_non_contiguous_and_read_only_inputs_are_accepted():
    rng = np.random.default_rng(4)
    root = valid_root(rng)
    probs = np.asfortranarray(root["probs"])
    root["probs"] = probs
    root["values"].setflags(write=False)
    trees = mcts.ctree.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    trees.prepare(**root)
    reference = ptree.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    reference.prepare(**root)
    np.testing.assert_array_equal(trees.root_children()["actions"], reference.root_children()["actions"])


CORRUPTIONS = ["nan", "inf", "negative", "zero_mass", "dtype", "shape", "extra_agent", "junk", "no_avail"]


def corrupt(rng, args, method):
    """Returns (args with one argument corrupted, True if the corruption must be rejected)."""
    kind = CORRUPTIONS[rng.integers(len(CORRUPTIONS))]
    names = [n for n in args if args[n] is not None and n != "noise_eps"]
    name = names[rng.integers(len(names))]
    arr = args[name]
    out = dict(args)
    if kind in ("nan", "inf", "negative", "zero_mass") and arr.dtype == np.float32:
        index = tuple(int(rng.integers(s)) for s in arr.shape)
        if kind == "negative":
            if name in ("values", "rewards"):
                out[name] = with_entry(arr, -5.0, index)  # negative values are valid
                return out, False
            out[name] = with_entry(arr, -rng.random() - 1e-6, index)
        elif kind == "zero_mass":
            if not (method == "expand" and name == "probs"):
                return out, False
            out[name] = with_entry(arr, 0.0, index[:2] + (slice(None),))
        else:
            out[name] = with_entry(arr, np.nan if kind == "nan" else -np.inf, index)
        return out, True
    if kind == "dtype":
        out[name] = arr.astype(np.float64 if arr.dtype != np.float64 else np.float32)
    elif kind == "shape":
        out[name] = arr.reshape(-1) if arr.ndim > 1 else arr[:-1]
    elif kind == "extra_agent" and arr.ndim == 3:
        out[name] = np.concatenate([arr, arr[:, :1]], axis=1)
    elif kind == "no_avail" and name == "avail_actions":
        out[name] = with_entry(arr, False, (int(rng.integers(B)), int(rng.integers(N)), slice(None)))
    else:
        out[name] = [object(), "junk", b"x", 3.0][rng.integers(4)]
    return out, True


@TREES
def test_survives_random_corrupted_calls(module):
    rng = np.random.default_rng(5)
    trees = module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, **KW)
    phase, sims, rejected = "reset", 0, 0
    num_calls = 10_000 if module is mcts.ctree else 2_000
    for _ in range(num_calls):
        method = ["prepare", "select", "expand", "reset"][rng.choice(4, p=[0.2, 0.35, 0.4, 0.05])]
        args = valid_root(rng) if method == "prepare" else valid_leaf(rng) if method == "expand" else {}
        must_fail = False
        if args and rng.random() < 0.5:
            args, must_fail = corrupt(rng, args, method)
        must_fail |= (method == "select" and (phase != "ready" or sims == S)) or (
            method == "expand" and phase != "selected")
        try:
            getattr(trees, method)(**args)
        except ValueError:
            assert must_fail, (method, phase)
            rejected += 1
            continue
        assert not must_fail, (method, phase, {k: type(v) for k, v in args.items()})
        if method == "prepare":
            phase, sims = "ready", 0
        elif method == "select":
            phase = "selected"
        elif method == "expand":
            phase, sims = "ready", sims + 1
        else:
            phase = "reset"
        if phase != "reset":
            assert np.isfinite(trees.root_values()).all()
    assert rejected > num_calls // 4


@pytest.mark.subprocess
def test_fallback_to_ptree_warns_once_without_the_extension():
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    code = (
        "import sys, warnings\n"
        "sys.modules['mcts.ctree'] = None  # as if the extension were not built\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import mcts\n"
        "    import mcts as again\n"
        "from mcts import ptree\n"
        "assert mcts.ctree is None and mcts.SampledTrees is ptree.SampledTrees\n"
        "messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]\n"
        "assert len(messages) == 1 and 'pip install -e .' in messages[0], messages\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=src),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.subprocess
def test_arena_allocation_failure_raises_memory_error_and_keeps_the_search():
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    code = """
import resource
import numpy as np
from mcts import ctree
S = 4000  # a chain: its OS(lambda) regions add up to about S**2 / 2 slots (190 MB)
trees = ctree.SampledTrees(1, 1, 1, 1, S, os_rho=0.5, os_lambda=0.9, gamma=0.97)
one = np.ones((1, 1, 1), np.float32)
zero = np.zeros(1, np.float32)
trees.prepare(zero, one, np.ones((1, 1, 1), bool), None, 0.0)
usage = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (usage + 64 * 2**20, resource.RLIM_INFINITY))
try:
    for _ in range(S):
        trees.select()
        trees.expand(zero, zero, one)
except MemoryError as exc:
    assert "OS(lambda) arena" in str(exc), exc
    before = trees.root_values()
    try:
        trees.expand(zero, zero, one)  # the failed step changed nothing and can be retried
    except MemoryError:
        pass
    assert (trees.root_values() == before).all()
    print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=src),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
