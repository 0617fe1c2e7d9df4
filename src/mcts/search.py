"""Batched search driver: MAZero's sampled joint-action MCTS over B roots with one network call per simulation.
`root_search: gumbel` gives the trees Gumbel MuZero's root instead (docs/gumbel.md).

Per search: one `initial_inference` on all roots, then per simulation one `select` over all trees, one gather of
the parents' latents from a preallocated pool [S+1, B, N, H] with an index tensor, one batched
`recurrent_inference` with the scalars and softmax the tree needs, and one `expand`. The tree (`mcts.SampledTrees`)
holds all statistics; this module only moves tensors (docs/mcts.md, "API"). The two network calls run as a
TorchScript trace of the model (`SearchNetwork`): the same operations, without Python's per-operation cost, which
is most of a call at the few roots of a self-play step (docs/mazero_perf.md).
"""
import warnings
import weakref
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn as nn

from utils.config_record import check_record, record_from_config
from utils.value_transform import logits_to_scalar

# The SearchConfig fields the trees (mcts.SampledTrees) take as keyword arguments of the same names.
TREE_KEYS = ("os_rho", "os_lambda", "gamma", "pb_c_base", "pb_c_init", "value_delta_min", "use_os_lambda",
             "root_search", "gumbel_c_visit", "gumbel_c_scale")


@dataclass(frozen=True)
class SearchConfig:
    """What a search needs from the run's config; each field is the config key of the same name
    (src/config/algs/mazero.yaml, docs/mcts.md), checked by config_checks' rule for that key."""
    num_simulations: int  # S, simulations per search
    sampled_actions: int  # K_s, joint actions sampled i.i.d. per expanded node (the Gumbel root: distinct ones)
    os_rho: float  # rho of OS(lambda): keep the top ceil((1 - rho) n) returns per depth
    os_lambda: float  # lambda of OS(lambda): weight lambda^d of depth-d returns
    gamma: float  # discount of the rewards along a search path
    pb_c_base: float  # c2 of the pUCT rule
    pb_c_init: float  # c1 of the pUCT rule
    value_delta_min: float  # delta, lower bound of the min-max normaliser's range
    use_os_lambda: bool  # OS(lambda) backup; False = plain mean backup (Sampled MuZero's Q)
    root_search: str  # "sampled" (K_s i.i.d. joint actions, pUCT) or "gumbel" (Gumbel MuZero's root, docs/gumbel.md)
    gumbel_c_visit: float  # c_visit of the Gumbel root's sigma(q) = (c_visit + max N) * c_scale * q
    gumbel_c_scale: float  # c_scale of the Gumbel root's sigma
    root_dirichlet_alpha: float  # alpha of the root's Dirichlet noise (sampled root)
    root_exploration_fraction: float  # epsilon, weight of the root's Dirichlet noise
    value_support_size: int  # value head: two-hot over [-value_support_size, value_support_size] after h(x)
    reward_support_size: int  # reward head: two-hot over [-reward_support_size, reward_support_size] after h(x)

    def __post_init__(self):
        check_record(self)

    @classmethod
    def from_config(cls, config, **overrides):
        """The record read by field name from the config namespace `config`, `overrides` replacing values (the
        reanalysis search: `num_simulations=reanalyse_num_simulations`)."""
        return record_from_config(cls, config, **overrides)

    def tree_kwargs(self):
        """The keyword arguments of mcts.SampledTrees this config sets."""
        return {name: getattr(self, name) for name in TREE_KEYS}


def avail_or_all(avail_actions):
    """Availability masks with every action available for agents that have none.

    The runner also asks for an action at an episode's final observation (a dummy, never executed), and the
    reanalysis searches past-the-end roots whose targets are masked; where an env reports no available action
    there, the search still needs a non-empty mask.
    """
    avail_actions = torch.as_tensor(avail_actions).bool()
    return avail_actions | ~avail_actions.any(-1, keepdim=True)


@dataclass
class SearchStats:
    """What a search leaves for the policy targets, per root; `...` is any batch shape, K_s = sampled_actions.

    The controller stores these in the episode batch (`scheme`, one field per statistic under the same name), the
    replay keeps them per transition, and the learner reads them for the roots it does not reanalyse.
    """
    joint_actions: torch.Tensor  # [..., K_s, N] long: the sampled joint actions of the root, -1 padded
    visits: torch.Tensor  # [..., K_s] float: visit counts n(s, a), 0 for padding
    q_values: torch.Tensor  # [..., K_s] float: r + gamma V^rho_lambda(child); Gumbel root: completed Q if unvisited
    network_value: torch.Tensor  # [...] float: the network's value v̂ of the root (the advantage baseline)
    # [..., K_s] float: the policy target over the root's joint actions, 0 for padding: visit shares n / sum n (the
    # sampled root), the improved policy softmax(log pi~ + sigma(completed Q)) (the Gumbel root). None means visit
    # shares, the sampled root's target, so statistics built by hand (tests, benches) need not spell it out.
    policy_target: torch.Tensor = None

    def __post_init__(self):
        if self.policy_target is None:
            self.policy_target = self.visits / self.visits.sum(-1, keepdim=True).clamp(min=1.0)

    @staticmethod
    def scheme(sampled_actions, n_agents):
        """EPyMARL episode-scheme entries, one per statistic (the scalar network_value is stored as [1])."""
        return {"joint_actions": {"vshape": (sampled_actions, n_agents), "dtype": torch.long},
                "visits": {"vshape": (sampled_actions,)},
                "q_values": {"vshape": (sampled_actions,)},
                "network_value": {"vshape": (1,)},
                "policy_target": {"vshape": (sampled_actions,)}}

    @classmethod
    def padding(cls, shape, sampled_actions, n_agents):
        """Statistics of `shape` roots that were never searched: no sampled joint action (-1), zeros."""
        return cls(joint_actions=torch.full((*shape, sampled_actions, n_agents), -1, dtype=torch.long),
                   visits=torch.zeros(*shape, sampled_actions), q_values=torch.zeros(*shape, sampled_actions),
                   network_value=torch.zeros(shape), policy_target=torch.zeros(*shape, sampled_actions))

    @classmethod
    def from_episode_batch(cls, batch, index):
        """The statistics stored in an episode batch (fields named by `scheme`) at `index`."""
        stats = {f.name: batch[f.name][index] for f in fields(cls)}
        stats["network_value"] = stats["network_value"][..., 0]
        return cls(**stats)

    def episode_fields(self):
        """The statistics as episode-batch fields (see `scheme`)."""
        stats = self.as_dict()
        stats["network_value"] = stats["network_value"].unsqueeze(-1)
        return stats

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __getitem__(self, index):
        return SearchStats(**{name: value[index] for name, value in self.as_dict().items()})

    def __setitem__(self, index, other):
        for name, value in self.as_dict().items():
            value[index] = getattr(other, name)

    def clone(self):
        return SearchStats(**{name: value.clone() for name, value in self.as_dict().items()})

    def to(self, device):
        return SearchStats(**{name: value.to(device) for name, value in self.as_dict().items()})


@dataclass
class SearchResult:
    """Everything one batched search returns: the stored statistics and the root's other outputs."""
    stats: SearchStats  # [B, ...]
    root_values: np.ndarray  # [B] V^rho_lambda(root)
    policy_logits: torch.Tensor  # [B, N, A] network policy at the root ([B, 1, A^N] for agent: mazero_flat)
    num_children: np.ndarray  # [B] |T(root)|
    # [B] long: the joint action to act with, an index into K_s: the most visited (first on ties) for the sampled
    # root, Sequential Halving's winner for the Gumbel root; None means the most visited
    selected: torch.Tensor = None

    def __post_init__(self):
        if self.selected is None:
            self.selected = self.stats.visits.argmax(-1)


class SearchNetwork(nn.Module):
    """A model's two search-time calls with the search's per-call tensor work folded in, so that both trace into one
    graph each: `root` = initial_inference, `step` = decode the tree's actions + recurrent_inference; each returns
    the latent, and the value (and reward) scalars with the policy's softmax as one float32 block [B, X] that
    crosses to the host in one copy."""

    def __init__(self, model, value_support_size, reward_support_size):
        super().__init__()
        self.model = model
        self.value_support_size = value_support_size
        self.reward_support_size = reward_support_size

    def root(self, inputs):
        """inputs [B, N, D] -> (latent, policy logits, [value | probs] [B, 1 + F*A])."""
        latent, value_logits, policy_logits = self.model.initial_inference(inputs)
        values = logits_to_scalar(value_logits, self.value_support_size)
        return latent, policy_logits, host_block(values, torch.softmax(policy_logits, dim=-1))

    def step(self, parents, tree_actions):
        """parents [B, N, H], tree_actions [B, F] (the tree's space) -> (next latent, [value | reward | probs])."""
        next_latent, reward_logits, value_logits, leaf_logits = self.model.recurrent_inference(
            parents, self.model.action_space.decode(tree_actions))
        return next_latent, host_block(logits_to_scalar(value_logits, self.value_support_size),
                                       logits_to_scalar(reward_logits, self.reward_support_size),
                                       torch.softmax(leaf_logits, dim=-1))


def trace_search_network(network, inputs, latent, tree_actions):
    """TorchScript trace of a SearchNetwork's `root` and `step` on example inputs (any batch size works after), or
    the network itself, with a warning, where this torch cannot trace it (the same results, slower)."""
    with warnings.catch_warnings():
        # torch.jit.trace is marked deprecated in favour of torch.compile / torch.export, neither of which beats
        # eager mode here (docs/mazero_perf.md); tests/test_mcts_search.py checks the trace against eager.
        warnings.filterwarnings("ignore", message=".*torch.jit.trace.*")
        try:
            return torch.jit.trace_module(network, {"root": (inputs,), "step": (latent, tree_actions)},
                                          check_trace=False)
        except Exception as error:  # noqa: BLE001 -- any tracing failure leaves the eager path, which always works
            failure = error
    warnings.warn(f"MCTS search: torch.jit.trace failed ({type(failure).__name__}: {failure}); the search runs "
                  f"the model eagerly (same results, slower at small batches)", RuntimeWarning)
    return network


def host_block(*tensors):
    """Tensors [B, ...] as one float32 block [B, X] (their flattened per-root parts side by side)."""
    return torch.cat([t.float().flatten(1) if t.dim() > 1 else t.float().unsqueeze(1) for t in tensors], dim=1)


def split_block(block, shapes):
    """Host copy of a block from `host_block` -> numpy arrays [B, *shape] for the per-root shapes given."""
    flat = block.cpu().numpy()
    arrays, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        arrays.append(np.ascontiguousarray(flat[:, start:start + size]).reshape(flat.shape[0], *shape))
        start += size
    return arrays


class MCTSSearch:
    """Runs batched searches with a given model, as `config` (a SearchConfig) says."""

    def __init__(self, config, seed, tree_cls=None):
        self.config = config
        self.tree_cls = tree_cls  # None: mcts.SampledTrees (compiled if built), imported at the first search
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.num_searches = 0
        self._pool = None
        self._network = None  # (weakref to the model, its device, its training flag, the traced SearchNetwork)

    def state_dict(self):
        """The driver's random state: the Dirichlet-noise stream, and the seed and search counter of the trees."""
        return {"rng": self.rng.bit_generator.state, "seed": self.seed, "num_searches": self.num_searches}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.seed = state["seed"]
        self.num_searches = state["num_searches"]

    def _new_trees(self, num_roots, action_space):
        if self.tree_cls is None:
            from mcts import SampledTrees
            self.tree_cls = SampledTrees
        # Trees are cheap to build (their node pools are allocated in prepare); every search gets its own seed,
        # derived from the driver's seed and a call counter, so searches are reproducible but not correlated.
        seed = (self.seed * 1000003 + self.num_searches) % (2 ** 63)
        self.num_searches += 1
        # The tree works in the model's action space: N agents x A actions (MAZero) or 1 x A^N (agent: mazero_flat).
        config = self.config
        return self.tree_cls(num_roots, action_space.n_factors, action_space.factor_size, config.sampled_actions,
                             config.num_simulations, seed=seed, **config.tree_kwargs())

    def reseed(self, seed):
        """Restarts the random streams from `seed`: the Dirichlet noise and the trees' seeds. The learner reseeds
        per batch, so a batch's reanalysis targets depend on its seed only, whichever process searches it."""
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.num_searches = 0

    def _pool_for(self, num_roots, latent):
        """View [S+1, B, N, H] of one preallocated latent pool on the latent's device, grown when a larger batch
        comes."""
        pool = self._pool
        if (pool is None or pool.shape[1] < num_roots or pool.shape[2:] != latent.shape[1:]
                or pool.dtype != latent.dtype or pool.device != latent.device):
            pool = torch.empty(self.config.num_simulations + 1, num_roots, *latent.shape[1:], dtype=latent.dtype,
                               device=latent.device)
            self._pool = pool
        return pool[:, :num_roots]

    def network_for(self, model, inputs):
        """The traced SearchNetwork of `model`, traced at its first search and again only when the model, its
        device or its train/eval mode changes. The trace shares the model's parameters, so weight updates and
        load_state_dict reach it; it is recorded on example inputs but holds no batch size."""
        device = inputs.device
        cached = self._network
        if cached is not None and cached[0]() is model and cached[1] == device and cached[2] == model.training:
            return cached[3]
        network = SearchNetwork(model, self.config.value_support_size, self.config.reward_support_size)
        latent = model.initial_inference(inputs)[0]
        tree_actions = torch.zeros(inputs.shape[0], model.action_space.n_factors, dtype=torch.long, device=device)
        traced = trace_search_network(network, inputs, latent, tree_actions)
        self._network = (weakref.ref(model), device, model.training, traced)
        return traced

    @torch.no_grad()
    def run(self, model, inputs, avail_actions, add_noise):
        """Search from B roots.

        model: a MAZero-family model (put in eval mode by the caller), on any device; inputs [B, N, D] float
        tensor (moved to the model's device); avail_actions [B, N, A] bool (numpy or tensor), each agent needs at
        least one available action; add_noise: root Dirichlet noise, or Gumbel noise for the Gumbel root
        (self-play and reanalysis), or none (evaluation). The tree runs in `model.action_space` on the CPU; the
        result's joint actions are per-agent actions [B, K_s, N], and the result is on the CPU except
        `policy_logits` (on the model's device).
        """
        avail_actions = torch.as_tensor(avail_actions).bool()
        B = avail_actions.shape[0]
        if not bool(avail_actions.any(-1).all()):
            raise ValueError("every agent needs at least one available action at the root")
        space = model.action_space
        device = next(model.parameters()).device
        inputs = inputs.to(device)
        network = self.network_for(model, inputs)
        F, A = space.n_factors, space.factor_size
        latent, policy_logits, block = network.root(inputs)
        pred_values, probs = split_block(block, [(), (F, A)])
        trees = self._new_trees(B, space)
        self._prepare(trees, pred_values, probs, space.encode_avail_actions(avail_actions).numpy(), add_noise)

        pool = self._pool_for(B, latent)
        pool[0] = latent
        batch_index = torch.arange(B, device=device)
        for sim in range(self.config.num_simulations):
            # Per simulation the tree's inputs go to the device and its outputs come back, one copy each way.
            parent_index, actions = trees.select()
            tree_inputs = torch.from_numpy(np.concatenate([np.asarray(parent_index, dtype=np.int64)[:, None],
                                                           np.asarray(actions, dtype=np.int64)], 1)).to(device)
            next_latent, block = network.step(pool[tree_inputs[:, 0], batch_index], tree_inputs[:, 1:])
            pool[sim + 1] = next_latent
            values, rewards, leaf_probs = split_block(block, [(), (), (F, A)])
            trees.expand(values, rewards, leaf_probs)
        return search_result(trees, space, pred_values, policy_logits)

    def _prepare(self, trees, pred_values, probs, avail_actions, add_noise):
        """Expands the roots: with Dirichlet noise drawn here (the sampled root, `add_noise`), or with the Gumbel
        perturbation the trees draw (the Gumbel root)."""
        config = self.config
        if config.root_search == "gumbel":
            trees.prepare(pred_values, probs, avail_actions, None, 0.0, gumbel_noise=add_noise)
            return
        B, F, A = probs.shape
        noise = self.rng.dirichlet(np.full(A, config.root_dirichlet_alpha),
                                   size=(B, F)).astype(np.float32) if add_noise else None
        trees.prepare(pred_values, probs, avail_actions, noise, config.root_exploration_fraction)


def search_result(trees, space, pred_values, policy_logits):
    """The SearchResult of finished `trees` whose actions live in `space`, with the root's network outputs."""
    children = trees.root_children()
    joint_actions = space.decode(torch.from_numpy(np.asarray(children["actions"], dtype=np.int64)))
    stats = SearchStats(joint_actions=joint_actions,
                        visits=torch.from_numpy(np.asarray(children["visits"], dtype=np.float32)),
                        q_values=torch.from_numpy(np.asarray(children["q_values"], dtype=np.float32)),
                        network_value=torch.from_numpy(pred_values),
                        policy_target=torch.from_numpy(np.asarray(children["policy_target"], dtype=np.float32)))
    return SearchResult(stats=stats, root_values=np.asarray(trees.root_values(), dtype=np.float32),
                        policy_logits=policy_logits,
                        num_children=np.asarray(children["num_children"], dtype=np.int64),
                        selected=torch.from_numpy(np.asarray(children["selected"], dtype=np.int64)))
