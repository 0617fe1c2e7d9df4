"""Argument and array checks shared by `mcts.ctree` and `mcts.ptree`.

Shapes and dtypes are checked once per call here; the per-element checks (NaN/inf, negative probabilities, an agent
with no probability mass) run inside the trees: vectorised in ptree, fused into the sampling loops in ctree.
"""
import math
import operator

import numpy as np

# Joint actions are stored as int16 per agent in the edge pool.
MAX_ACTIONS = 32767


def _int_param(name, value, minimum):
    try:
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if as_int < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {as_int}")
    return as_int


def _float_param(name, value, low=None, high=None, low_open=False):
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(as_float):
        raise ValueError(f"{name} must be finite, got {as_float}")
    if low is not None and (as_float <= low if low_open else as_float < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {as_float}")
    if high is not None and as_float > high:
        raise ValueError(f"{name} must be <= {high}, got {as_float}")
    return as_float


def tree_params(num_roots, n_agents, n_actions, sampled_actions, num_simulations, os_rho, os_lambda, gamma,
                pb_c_base, pb_c_init, value_delta_min, seed):
    """Validates the constructor arguments; returns them converted to int / float."""
    params = dict(
        num_roots=_int_param("num_roots", num_roots, 1),
        n_agents=_int_param("n_agents", n_agents, 1),
        n_actions=_int_param("n_actions", n_actions, 1),
        sampled_actions=_int_param("sampled_actions", sampled_actions, 1),
        num_simulations=_int_param("num_simulations", num_simulations, 1),
        os_rho=_float_param("os_rho", os_rho, 0.0, 1.0),
        os_lambda=_float_param("os_lambda", os_lambda, 0.0, 1.0),
        gamma=_float_param("gamma", gamma, 0.0, 1.0),
        pb_c_base=_float_param("pb_c_base", pb_c_base, 0.0, low_open=True),
        pb_c_init=_float_param("pb_c_init", pb_c_init, 0.0),
        value_delta_min=_float_param("value_delta_min", value_delta_min, 0.0, low_open=True),
        seed=seed_param(seed),
    )
    if params["n_actions"] > MAX_ACTIONS:
        raise ValueError(f"n_actions must be <= {MAX_ACTIONS}, got {params['n_actions']}")
    # Every pool index is an int32 inside one tree.
    nodes = params["num_simulations"] + 1
    if nodes * (nodes + 1) // 2 >= 2**31 or nodes * params["sampled_actions"] * params["n_agents"] >= 2**31:
        raise ValueError("num_simulations * sampled_actions * n_agents is too large for one tree")
    return params


ROOT_SEARCHES = ("sampled", "gumbel")


def root_params(root_search, gumbel_c_visit, gumbel_c_scale):
    """Validates the root-search arguments (docs/gumbel.md); returns (root_search, c_visit, c_scale)."""
    if root_search not in ROOT_SEARCHES:
        raise ValueError(f"root_search must be one of {', '.join(ROOT_SEARCHES)}, got {root_search!r}")
    return (root_search, _float_param("gumbel_c_visit", gumbel_c_visit, 0.0),
            _float_param("gumbel_c_scale", gumbel_c_scale, 0.0, low_open=True))


def gumbel_noise_param(gumbel_noise, gumbel_root, noise):
    """prepare()'s `gumbel_noise` flag: only the Gumbel root takes it, and that root takes no Dirichlet noise."""
    if not isinstance(gumbel_noise, (bool, np.bool_)):
        raise ValueError(f"gumbel_noise must be a bool, got {gumbel_noise!r}")
    if gumbel_noise and not gumbel_root:
        raise ValueError("gumbel_noise=True needs root_search='gumbel'")
    if gumbel_root and noise is not None:
        raise ValueError("the Gumbel root takes no Dirichlet noise (noise must be None): it explores by its "
                         "Gumbel noise (gumbel_noise=True)")
    return bool(gumbel_noise)


def halving_schedule(num_considered, num_simulations):
    """Sequential Halving's visit schedule (Danihelka et al. 2022, Sec. 4; docs/gumbel.md): the visit count the
    root child chosen by simulation j has before that simulation, for j = 0 .. num_simulations - 1.

    Phases of ceil(log2 m) over m considered actions: in a phase every one of the r remaining actions gets
    max(1, floor(S / (ceil(log2 m) * r))) more visits, one round of r visits at a time; then r = max(2, r // 2).
    Past the last phase the two best keep alternating until the budget is spent. With m = 1 the one action takes
    every simulation."""
    if num_considered == 1:
        return list(range(num_simulations))
    phases = math.ceil(math.log2(num_considered))
    schedule, level, remaining = [], 0, num_considered
    while len(schedule) < num_simulations:
        rounds = max(1, num_simulations // (phases * remaining))
        for _ in range(rounds):
            schedule.extend([level] * remaining)
            level += 1
        remaining = max(2, remaining // 2)
    return schedule[:num_simulations]


def seed_param(seed):
    seed = _int_param("seed", seed, 0)
    if seed >= 2**64:
        raise ValueError(f"seed must be < 2**64, got {seed}")
    return seed


def node_params(b, node, num_roots, num_nodes):
    """Validates node_children()'s tree index `b` and pool index `node`; `num_nodes` [num_roots]: the trees' node
    counts."""
    b = _int_param("b", b, 0)
    if b >= num_roots:
        raise ValueError(f"b must be < num_roots = {num_roots}, got {b}")
    node = _int_param("node", node, 0)
    if node >= num_nodes[b]:
        raise ValueError(f"node {node} of tree {b} does not exist yet (the tree has {num_nodes[b]} nodes)")
    return b, node


def noise_eps_param(noise_eps):
    return _float_param("noise_eps", noise_eps, 0.0, 1.0)


def array(name, value, dtype, shape):
    """`value` as a C-contiguous array of exactly `dtype` and `shape` (no silent casts), else ValueError."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # arbitrary objects may fail in their own ways
        raise ValueError(f"{name} must be an array, got {type(value).__name__} ({exc})") from None
    if arr.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def finite(name, arr):
    """ValueError naming the first tree whose entry of `arr` ([B] or [B, ...]) is NaN or inf."""
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} contains NaN or inf (tree {int(np.argwhere(bad)[0][0])})")


def probabilities(name, probs, avail_actions=None):
    """ValueError for NaN/inf or negative entries of `probs` [B, N, A], or an agent with zero total mass; with
    `avail_actions` [B, N, A] (the root, which adds a floor to every available action's probability), an agent
    with no available action."""
    bad = ~np.isfinite(probs)
    if bad.any():
        b, i, _ = np.argwhere(bad)[0]
        raise ValueError(f"{name} contains NaN or inf (tree {b}, agent {i})")
    bad = probs < 0
    if bad.any():
        b, i, _ = np.argwhere(bad)[0]
        raise ValueError(f"{name} contains negative entries (tree {b}, agent {i})")
    if avail_actions is None:
        bad = ~(probs > 0).any(axis=2)
        if bad.any():
            b, i = np.argwhere(bad)[0]
            raise ValueError(f"{name} of tree {b}, agent {i} sums to 0: cannot sample an action")
    else:
        bad = ~avail_actions.any(axis=2)
        if bad.any():
            b, i = np.argwhere(bad)[0]
            raise ValueError(f"avail_actions has no available action for tree {b}, agent {i}")


def concurrent_use_message(method, busy_in):
    """The RuntimeError text of a SampledTrees call made while another thread is inside `busy_in` (both trees)."""
    return (f"SampledTrees.{method}() called while another thread is inside SampledTrees.{busy_in}() of the same "
            f"object; a SampledTrees object serves one thread at a time: give each thread its own")
