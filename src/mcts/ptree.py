"""Pure-Python twin of `mcts.ctree`: the same API and, for the same seed and inputs, the same results.

It is the readable reference of the search semantics (docs/mcts.md, "Semantics"; paper Eqs. 5-9) and the oracle the tests hold
the compiled tree against. Every floating-point expression is evaluated in float64 in the same order as in
ctree.pyx, and both trees draw from the same PCG32 streams, so selections agree exactly, not just approximately.
"""
import functools
import math
import threading

import numpy as np

from mcts import _checks

_MASK64 = 0xFFFFFFFFFFFFFFFF
_MASK32 = 0xFFFFFFFF
_PCG_MULT = 6364136223846793005
_U32_TO_UNIT = 1.0 / 4294967296.0  # 2**-32: u32 * this is an exact double in [0, 1)
# Added to every available action's probability at the root before normalising, so that every available action can
# be sampled however small its prior (docs/mcts.md, "Semantics").
_ROOT_PRIOR_FLOOR = 1e-4
# ceil(count * (1 - os_rho)) is taken after subtracting this, so 10 * (1 - 0.7) = 3.0000000000000004 keeps 3, not 4.
_KEEP_EPS = 1e-9
_LN2 = 0.6931471805599453  # log1mexp switches formulas at -log 2 (Maechler's accurate log(1 - e^x))


class Pcg32:
    """PCG32 (O'Neill's pcg32_random_r, XSH-RR 64/32) seeded like pcg32_srandom_r(initstate, initseq)."""

    __slots__ = ("state", "inc")

    def __init__(self, initstate, initseq):
        self.state = 0
        self.inc = ((initseq << 1) | 1) & _MASK64
        self.next_u32()
        self.state = (self.state + initstate) & _MASK64
        self.next_u32()

    def next_u32(self):
        old = self.state
        self.state = (old * _PCG_MULT + self.inc) & _MASK64
        xorshifted = (((old >> 18) ^ old) >> 27) & _MASK32
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & _MASK32

    def bounded(self, n):
        """Integer in [0, n) by Lemire's multiply-shift (no rejection: the bias is < n / 2**32)."""
        return (self.next_u32() * n) >> 32


def gumbel(rng):
    """A standard Gumbel draw -log(-log u), u = (u32 + 1/2) * 2**-32 in (0, 1)."""
    return -math.log(-math.log((rng.next_u32() + 0.5) * _U32_TO_UNIT))


def truncated_gumbel(bound, maximum, perturbed):
    """Kool et al. 2019, Eq. 23 (in their stable form): a child's perturbed log-probability `perturbed` shifted so
    that the largest of its siblings (`maximum`) becomes the parent's `bound`: -log(e^-bound - e^-maximum +
    e^-perturbed). The siblings' maximum gets exactly `bound`."""
    if perturbed >= maximum:
        return bound
    x = perturbed - maximum
    log1mexp = math.log(-math.expm1(x)) if x > -_LN2 else math.log1p(-math.exp(x))
    v = bound - perturbed + log1mexp
    return bound - (v if v > 0.0 else 0.0) - math.log1p(math.exp(-abs(v)))


def keep_count(count, one_minus_rho):
    """|U^rho_d| = max(1, ceil((1 - rho) * |U_d|)) (rho = os_rho): how many of a depth's returns OS(lambda) keeps."""
    keep = math.ceil(count * one_minus_rho - _KEEP_EPS)
    return keep if keep > 1 else 1


class _Tree:
    """One search tree. Node i's latent sits at pool index i (0 = root, j + 1 = leaf of simulation j); node i's
    child edges are edge slots i*K_s .. i*K_s + num_children[i] - 1 (K_s = sampled_actions), in ascending
    lexicographic joint-action order."""

    __slots__ = ("rng", "num_nodes", "parent", "v_hat", "reward", "visits", "value", "adv", "num_children",
                 "edge_child", "edge_prior", "edge_action", "returns", "tops", "keeps", "return_sum",
                 "adv_min", "adv_max", "argmin", "argmax", "pending_parent", "pending_edge", "root_log_prior",
                 "root_score")

    def __init__(self, rng, num_nodes, num_edges):
        self.rng = rng
        self.num_nodes = 0
        self.parent = [-1] * num_nodes
        self.v_hat = [0.0] * num_nodes
        self.reward = [0.0] * num_nodes
        self.visits = [0] * num_nodes
        self.value = [0.0] * num_nodes
        self.adv = [0.0] * num_nodes  # A(s, a) = r + gamma * V(child) - v_hat(parent), of the edge into node i
        self.num_children = [0] * num_nodes
        self.edge_child = [-1] * num_edges
        self.edge_prior = [0.0] * num_edges
        self.edge_action = [None] * num_edges
        self.returns = [None] * num_nodes  # OS(lambda): per node, per relative depth, returns sorted descending
        self.tops = [None] * num_nodes  # per node, per depth: sum of the kept (top) returns
        self.keeps = [None] * num_nodes  # per node, per depth: number of kept returns
        self.return_sum = [0.0] * num_nodes  # mean backup (use_os_lambda=False)
        self.adv_min = 0.0
        self.adv_max = 0.0
        self.argmin = -1
        self.argmax = -1
        self.pending_parent = -1
        self.pending_edge = -1
        # Gumbel root, per root child slot: log pi~(a) (the joint log-prior) and g(a) + log pi~(a) (its Gumbel score)
        self.root_log_prior = None
        self.root_score = None


def one_thread_at_a_time(method):
    """ctree's guard: `method` raises RuntimeError instead of running while another thread is inside a method of the
    same object (a non-blocking lock makes the test and the mark one step)."""
    name = method.__name__

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        lock = self.__dict__.setdefault("_guard", threading.Lock())  # setdefault is atomic under the GIL
        if not lock.acquire(blocking=False):
            raise RuntimeError(_checks.concurrent_use_message(name, self.__dict__.get("_busy_in")))
        self._busy_in = name
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy_in = None
            lock.release()
    return guarded


class SampledTrees:
    """B independent MAZero search trees over sampled joint actions, stepped in lockstep.

    One search: ``prepare`` (expands the B roots), then ``num_simulations`` times ``select`` -> network -> ``expand``,
    then read ``root_values`` / ``root_children`` / ``marginal_visits``. ``prepare`` starts a new search on the same
    preallocated pools; ``reset`` also does, and can reseed the trees.

    Latent pool convention: the caller keeps latents as ``pool[num_simulations + 1, B, ...]``; ``pool[0]`` holds
    the roots and the leaf created by simulation j (the j-th ``expand``, from 0) goes to ``pool[j + 1]``. ``select``
    returns ``parent_index[b]``, the pool index of the node to extend in tree b, so the caller gathers
    ``pool[parent_index, arange(B)]``, runs the network with ``actions`` and writes the result to ``pool[j + 1]``.

    Semantics (docs/mcts.md, "Semantics"): each expanded node draws ``sampled_actions`` (K_s) joint actions i.i.d.
    (each agent independently) and keeps the distinct ones as children, sorted lexicographically, with prior
    beta_hat = count / K_s (the Sampled-MuZero prior Π p / Π beta * beta_hat reduces to beta_hat with tau = 1 because
    p = beta at every node). The root samples from the masked prior normalise(m * ((1-eps) * pi~ + eps * eta~))
    with pi~ = normalise(m * pi + 1e-4 * m) (same for the noise eta); inner nodes sample from the raw ``probs``
    without an availability mask. The first |T(root)| simulations visit the root children once each, in order;
    after that every node picks argmax of
    ``clip01((A - min) / max(value_delta_min, max - min)) + prior * sqrt(N) / (1 + n) * (pb_c_init + log((N +
    pb_c_base + 1) / pb_c_base))`` with A = r + gamma * V(child) - v_hat(node) (0 for an unvisited child) and
    min/max over the current A of every expanded non-root node. Exact score ties are broken uniformly at random
    with the tree's PCG32 stream (the official code breaks ties within 1e-6; exact ties keep the rule transitive
    and identical in both trees). V is OS(lambda):
    ``sum_d lambda^d * sum(top_d) / sum_d lambda^d * |top_d|`` (lambda = os_lambda) over the returns a node has
    received at each relative depth d, top_d being the largest max(1, ceil((1 - os_rho) * count_d)) of them; with
    ``use_os_lambda=False`` V is the plain mean of all returns (Sampled-MuZero backup). Tree b draws from PCG32(seed, b).
    ``root_search="gumbel"`` replaces the root's i.i.d. sampling, forcing and pUCT by Gumbel MuZero's root
    (docs/gumbel.md): K_s distinct joint actions by Gumbel-top-k (stochastic beam search over the agents), visited by
    Sequential Halving; inner nodes are unchanged.
    One object serves one Python thread at a time: a call while another thread is inside a method of the same
    object raises RuntimeError, as in ctree.
    """

    @one_thread_at_a_time
    def __init__(self, num_roots, n_agents, n_actions, sampled_actions, num_simulations, *, os_rho, os_lambda, gamma,
                 pb_c_base=19652, pb_c_init=1.25, value_delta_min=0.01, seed=0, use_os_lambda=True,
                 root_search="sampled", gumbel_c_visit=50.0, gumbel_c_scale=0.1):
        p = _checks.tree_params(num_roots, n_agents, n_actions, sampled_actions, num_simulations, os_rho, os_lambda,
                                gamma, pb_c_base, pb_c_init, value_delta_min, seed)
        self.root_search, self.gumbel_c_visit, self.gumbel_c_scale = _checks.root_params(
            root_search, gumbel_c_visit, gumbel_c_scale)
        self._gumbel_root = self.root_search == "gumbel"
        self.num_roots = p["num_roots"]
        self.n_agents = p["n_agents"]
        self.n_actions = p["n_actions"]
        self.sampled_actions = p["sampled_actions"]
        self.num_simulations = p["num_simulations"]
        self.os_rho = p["os_rho"]
        self.os_lambda = p["os_lambda"]
        self.gamma = p["gamma"]
        self.pb_c_base = p["pb_c_base"]
        self.pb_c_init = p["pb_c_init"]
        self.value_delta_min = p["value_delta_min"]
        self.use_os_lambda = bool(use_os_lambda)
        self._one_minus_rho = 1.0 - self.os_rho
        self._lam_pow = [1.0]
        for _ in range(self.num_simulations):
            self._lam_pow.append(self._lam_pow[-1] * self.os_lambda)
        num_nodes = self.num_simulations + 1
        self._trees = [_Tree(Pcg32(p["seed"], b), num_nodes, num_nodes * self.sampled_actions)
                       for b in range(self.num_roots)]
        # Sequential Halving's schedule for every possible number of root children m = 1..sampled_actions
        self._halving = [None] + [_checks.halving_schedule(m, self.num_simulations)
                                  for m in range(1, self.sampled_actions + 1)]
        self._sims_done = 0
        self._phase = "reset"  # reset -> ready (prepared) <-> selected

    # ----------------------------------------------------------------------------------------------- lifecycle
    @one_thread_at_a_time
    def reset(self, seed=None):
        """Forgets the current search; with ``seed``, reseeds tree b's stream to PCG32(seed, b)."""
        if seed is not None:
            seed = _checks.seed_param(seed)
            for b, tree in enumerate(self._trees):
                tree.rng = Pcg32(seed, b)
        self._sims_done = 0
        self._phase = "reset"

    @one_thread_at_a_time
    def prepare(self, values, probs, avail_actions, noise, noise_eps, gumbel_noise=False):
        """Expands the B roots (starting a new search): ``values`` [B] f32 root v_hat (the depth-0 term of the root
        value), ``probs`` [B, N, A] f32 policy, ``avail_actions`` [B, N, A] bool, ``noise`` [B, N, A] f32 or None (e.g.
        Dirichlet samples) mixed in with weight ``noise_eps``. The Gumbel root takes ``noise=None`` and
        ``gumbel_noise``: True perturbs its joint log-prior with Gumbel noise (self-play, reanalysis), False
        considers the K_s most probable joint actions (evaluation)."""
        B, N, A = self.num_roots, self.n_agents, self.n_actions
        gumbel_noise = _checks.gumbel_noise_param(gumbel_noise, self._gumbel_root, noise)
        values = _checks.array("values", values, np.float32, (B,))
        probs = _checks.array("probs", probs, np.float32, (B, N, A))
        avail_actions = _checks.array("avail_actions", avail_actions, np.bool_, (B, N, A))
        noise_eps = _checks.noise_eps_param(noise_eps)
        if noise is not None:
            noise = _checks.array("noise", noise, np.float32, (B, N, A))
        _checks.finite("values", values)
        _checks.probabilities("probs", probs, avail_actions)
        if noise is not None:
            _checks.probabilities("noise", noise, avail_actions)
        values_l, probs_l, avail_l = values.tolist(), probs.tolist(), avail_actions.tolist()
        noise_l = noise.tolist() if noise is not None else None
        one_minus_eps = 1.0 - noise_eps
        for b, tree in enumerate(self._trees):
            tree.num_nodes = 1
            tree.parent[0] = -1
            tree.v_hat[0] = values_l[b]
            tree.reward[0] = 0.0
            tree.visits[0] = 0
            tree.argmin = tree.argmax = -1
            if self._gumbel_root:
                self._gumbel_children(tree, [self._masked(probs_l[b][i], avail_l[b][i]) for i in range(N)],
                                      gumbel_noise)
                self._backup(tree, 0, values_l[b])
                continue
            cdfs = []
            for i in range(N):
                mask = avail_l[b][i]
                pi = self._masked(probs_l[b][i], mask)
                if noise_l is not None:
                    eta = self._masked(noise_l[b][i], mask)
                    sampling_probs = [one_minus_eps * pi[a] + noise_eps * eta[a] if mask[a] else 0.0 for a in range(A)]
                else:
                    sampling_probs = pi
                cdfs.append(self._cdf(sampling_probs))
            self._sample_children(tree, 0, cdfs)
            self._backup(tree, 0, values_l[b])
        self._sims_done = 0
        self._phase = "ready"

    @staticmethod
    def _masked(row, mask):
        # pi~ = normalise(pi * m + 1e-4 * m), summed left to right as in ctree
        floored = [row[a] + _ROOT_PRIOR_FLOOR if mask[a] else 0.0 for a in range(len(row))]
        total = 0.0
        for p in floored:
            total += p
        return [p / total for p in floored]

    @staticmethod
    def _cdf(weights):
        cdf = []
        acc = 0.0
        for w in weights:
            acc += w
            cdf.append(acc)
        return cdf

    # --------------------------------------------------------------------------------------------- simulation
    @one_thread_at_a_time
    def select(self):
        """Returns ``(parent_index [B] int32, actions [B, N] int32)``: the pool index of the node whose latent the
        network must extend in each tree, and the joint action to extend it with."""
        if self._phase == "reset":
            raise ValueError("select() called before prepare()")
        if self._phase == "selected":
            raise ValueError("select() called twice without expand() in between")
        if self._sims_done >= self.num_simulations:
            raise ValueError(f"select() called after all num_simulations={self.num_simulations} simulations")
        sampled_actions = self.sampled_actions
        parents = np.empty(self.num_roots, dtype=np.int32)
        actions = np.empty((self.num_roots, self.n_agents), dtype=np.int32)
        for b, tree in enumerate(self._trees):
            if self._gumbel_root:
                node, edge = 0, self._halving_child(tree)
                while tree.edge_child[edge] >= 0:
                    node = tree.edge_child[edge]
                    edge = node * sampled_actions + self._select_child(tree, node)
            elif self._sims_done < tree.num_children[0]:
                node, edge = 0, self._sims_done  # root forcing: every sampled root child once, in order
            else:
                node = 0
                while True:
                    edge = node * sampled_actions + self._select_child(tree, node)
                    if tree.edge_child[edge] < 0:
                        break
                    node = tree.edge_child[edge]
            tree.pending_parent = node
            tree.pending_edge = edge
            parents[b] = node
            actions[b] = tree.edge_action[edge]
        self._phase = "selected"
        return parents, actions

    def _halving_child(self, tree):
        """Sequential Halving at the root: among the children whose visit count is the schedule's for this
        simulation, the one with the largest g + log pi~ + sigma(completed Q) (first in order on ties)."""
        target = self._halving[tree.num_children[0]][self._sims_done]
        sigma = self._sigma(tree)[0]
        best = -math.inf
        choice = -1
        for c in range(tree.num_children[0]):
            child = tree.edge_child[c]
            if (tree.visits[child] if child >= 0 else 0) != target:
                continue
            score = tree.root_score[c] + sigma[c]
            if score > best:
                best = score
                choice = c
        return choice

    def _completed_q(self, tree):
        """Gumbel MuZero's completed Q of the root children (Danihelka et al. 2022, Eq. 10 and App. D): the OS(lambda)
        Q r + gamma * V(child) where visited, else v_mix = (v_hat + sum_b N(b) / sum_{visited} pi(b) *
        sum_{visited} pi(b) Q(b)) / (1 + sum_b N(b)), pi the joint prior pi~. Returns (completed Q, max_b N(b))."""
        m = tree.num_children[0]
        log_prior = tree.root_log_prior
        top = log_prior[0]
        for c in range(1, m):
            if log_prior[c] > top:
                top = log_prior[c]
        q = [0.0] * m
        visited = [False] * m
        visit_sum = 0
        max_visits = 0
        weighted = 0.0
        prior_sum = 0.0
        for c in range(m):
            child = tree.edge_child[c]
            if child >= 0:
                n = tree.visits[child]
                q[c] = tree.reward[child] + self.gamma * tree.value[child]
                visited[c] = True
                prior = math.exp(log_prior[c] - top)  # pi(b) up to a common factor, which cancels
                weighted += prior * q[c]
                prior_sum += prior
                visit_sum += n
                if n > max_visits:
                    max_visits = n
        v_mix = tree.v_hat[0]
        if visit_sum > 0:
            v_mix = (v_mix + visit_sum * (weighted / prior_sum)) / (1.0 + visit_sum)
        for c in range(m):
            if not visited[c]:
                q[c] = v_mix
        return q, max_visits

    def _sigma(self, tree):
        """sigma(q^) = (c_visit + max_b N(b)) * c_scale * q^ with q^ the completed Q min-max normalised over the root's
        children (the range floored at value_delta_min, as the pUCT normaliser). Returns (sigma, completed Q)."""
        q, max_visits = self._completed_q(tree)
        lo = hi = q[0]
        for value in q:
            if value < lo:
                lo = value
            if value > hi:
                hi = value
        span = hi - lo
        if span < self.value_delta_min:
            span = self.value_delta_min
        scale = (self.gumbel_c_visit + max_visits) * self.gumbel_c_scale
        return [scale * ((value - lo) / span) for value in q], q

    def _gumbel_children(self, tree, priors, gumbel_noise):
        """The root's children: K_s distinct joint actions by Gumbel-top-k over the factorised prior pi~ (``priors``,
        N rows [A], 0 where unavailable), by stochastic beam search over the agents (Kool et al. 2019): a beam of at
        most K_s partial joint actions with log-prior phi and perturbed value G, G(empty) ~ Gumbel(0); agent i
        extends each entry by its available actions, phi + log pi~^i(a), whose Gumbel perturbations are shifted so
        that their maximum equals the entry's G (`truncated_gumbel`); the K_s largest G (earlier first on ties)
        stay. Without noise G = phi, an exact top-K_s by joint prior. Children are stored in lexicographic order,
        prior = pi~(a)."""
        rng = tree.rng
        sampled_actions = self.sampled_actions
        beam = [((), 0.0, gumbel(rng) if gumbel_noise else 0.0)]  # (prefix, phi, G)
        for agent_prior in priors:
            log_prior = [math.log(p) if p > 0.0 else 0.0 for p in agent_prior]
            available = [a for a in range(len(agent_prior)) if agent_prior[a] > 0.0]
            best = []  # (G, prefix, phi), G descending, earlier first on ties
            for prefix, phi, bound in beam:
                value = {a: phi + log_prior[a] + gumbel(rng) if gumbel_noise else phi + log_prior[a] for a in available}
                maximum = -math.inf
                for a in available:
                    if value[a] > maximum:
                        maximum = value[a]
                # The shift is increasing in the perturbed value, so only this entry's K_s best can enter the beam,
                # in this order: the others' shifts are never computed.
                order = []
                for a in available:
                    pos = len(order)
                    while pos > 0 and value[order[pos - 1]] < value[a]:
                        pos -= 1
                    if pos < sampled_actions:
                        order.insert(pos, a)
                        del order[sampled_actions:]
                for a in order:
                    score = truncated_gumbel(bound, maximum, value[a]) if gumbel_noise else value[a]
                    pos = len(best)
                    while pos > 0 and best[pos - 1][0] < score:
                        pos -= 1
                    if pos >= sampled_actions:
                        break
                    best.insert(pos, (score, prefix + (a,), phi + log_prior[a]))
                    del best[sampled_actions:]
            beam = [(prefix, phi, score) for score, prefix, phi in best]
        beam.sort(key=lambda entry: entry[0])
        tree.root_log_prior = [phi for _, phi, _ in beam]
        tree.root_score = [score for _, _, score in beam]
        for c, (prefix, phi, _) in enumerate(beam):
            tree.edge_child[c] = -1
            tree.edge_prior[c] = math.exp(phi)
            tree.edge_action[c] = prefix
        self._new_node_stats(tree, 0, len(beam))

    def _select_child(self, tree, node):
        n_parent = tree.visits[node] - 1  # N_s = sum of the children's visits
        sqrt_n = math.sqrt(n_parent)
        c_term = self.pb_c_init + math.log((n_parent + self.pb_c_base + 1.0) / self.pb_c_base)
        # Never empty here: root forcing expands a root child before the first pUCT choice.
        lo = tree.adv_min
        span = tree.adv_max - lo
        if span < self.value_delta_min:
            span = self.value_delta_min
        base = node * self.sampled_actions
        best = -math.inf
        choice = -1
        ties = 0
        edge_child, edge_prior, visits, adv = tree.edge_child, tree.edge_prior, tree.visits, tree.adv
        for c in range(tree.num_children[node]):
            child = edge_child[base + c]
            if child >= 0:
                n_child = visits[child]
                q = (adv[child] - lo) / span
            else:
                n_child = 0
                q = (0.0 - lo) / span  # unvisited: advantage 0, i.e. the parent's predicted value
            if q < 0.0:
                q = 0.0
            elif q > 1.0:
                q = 1.0
            score = q + edge_prior[base + c] * sqrt_n / (1.0 + n_child) * c_term
            if score > best:
                best = score
                choice = c
                ties = 1
            elif score == best:
                ties += 1
                if tree.rng.bounded(ties) == 0:
                    choice = c
        return choice

    @one_thread_at_a_time
    def expand(self, values, rewards, probs):
        """Creates the leaf of the current simulation in every tree from the network output at the selected
        (parent, action): ``values`` [B] f32, ``rewards`` [B] f32, ``probs`` [B, N, A] f32 (the leaf's policy,
        sampled without an availability mask), then backs up OS(lambda) values and the min-max statistics."""
        if self._phase != "selected":
            raise ValueError("expand() called without a preceding select()")
        B, N, A = self.num_roots, self.n_agents, self.n_actions
        values = _checks.array("values", values, np.float32, (B,))
        rewards = _checks.array("rewards", rewards, np.float32, (B,))
        probs = _checks.array("probs", probs, np.float32, (B, N, A))
        _checks.finite("values", values)
        _checks.finite("rewards", rewards)
        _checks.probabilities("probs", probs)
        values_l, rewards_l, probs_l = values.tolist(), rewards.tolist(), probs.tolist()
        for b, tree in enumerate(self._trees):
            leaf = tree.num_nodes
            tree.num_nodes += 1
            tree.parent[leaf] = tree.pending_parent
            tree.edge_child[tree.pending_edge] = leaf
            tree.v_hat[leaf] = values_l[b]
            tree.reward[leaf] = rewards_l[b]
            tree.visits[leaf] = 0
            self._sample_children(tree, leaf, [self._cdf(row) for row in probs_l[b]])
            self._backup(tree, leaf, values_l[b])
        self._sims_done += 1
        self._phase = "ready"

    def _sample_children(self, tree, node, cdfs):
        """K_s i.i.d. joint actions (sample-major, agent-minor draws), deduplicated, sorted, prior = count / K_s."""
        rng = tree.rng
        counts = {}
        for _ in range(self.sampled_actions):
            row = []
            for cdf in cdfs:
                target = (rng.next_u32() * _U32_TO_UNIT) * cdf[-1]
                lo, hi = 0, len(cdf)
                while lo < hi:  # first action whose cumulative mass exceeds target
                    mid = (lo + hi) >> 1
                    if target < cdf[mid]:
                        hi = mid
                    else:
                        lo = mid + 1
                row.append(lo)
            key = tuple(row)
            counts[key] = counts.get(key, 0) + 1
        base = node * self.sampled_actions
        for c, key in enumerate(sorted(counts)):
            tree.edge_child[base + c] = -1
            tree.edge_prior[base + c] = counts[key] / self.sampled_actions
            tree.edge_action[base + c] = key
        self._new_node_stats(tree, node, len(counts))

    @staticmethod
    def _new_node_stats(tree, node, num_children):
        tree.num_children[node] = num_children
        tree.returns[node] = []
        tree.tops[node] = []
        tree.keeps[node] = []
        tree.return_sum[node] = 0.0

    # ------------------------------------------------------------------------------------------------- backup
    def _backup(self, tree, leaf, leaf_value):
        """Node s_i on the path s_0..s_L gets one return at relative depth L - i:
        G_L = v_L, G_i = r(s_{i+1}) + gamma * G_{i+1}."""
        gamma = self.gamma
        ret = leaf_value
        node = leaf
        depth = 0
        rescan = False
        while True:
            tree.visits[node] += 1
            self._add_return(tree, node, depth, ret)
            if node == 0:
                break
            parent = tree.parent[node]
            rescan |= self._set_advantage(tree, node,
                                          tree.reward[node] + gamma * tree.value[node] - tree.v_hat[parent])
            ret = tree.reward[node] + gamma * ret
            node = parent
            depth += 1
        if rescan:
            self._rescan_min_max(tree)

    def _add_return(self, tree, node, depth, ret):
        if not self.use_os_lambda:
            tree.return_sum[node] += ret
            tree.value[node] = tree.return_sum[node] / tree.visits[node]
            return
        returns, tops, keeps = tree.returns[node], tree.tops[node], tree.keeps[node]
        if depth == len(returns):
            returns.append([])
            tops.append(0.0)
            keeps.append(0)
        seg = returns[depth]
        pos = 0
        while pos < len(seg) and seg[pos] >= ret:
            pos += 1
        seg.insert(pos, ret)
        keep = keep_count(len(seg), self._one_minus_rho)
        top = 0.0
        for k in range(keep):
            top += seg[k]
        tops[depth] = top
        keeps[depth] = keep
        weighted_sum = 0.0
        weight = 0.0
        lam_pow = self._lam_pow
        for d in range(len(tops)):
            weighted_sum += lam_pow[d] * tops[d]
            weight += lam_pow[d] * keeps[d]
        tree.value[node] = weighted_sum / weight

    @staticmethod
    def _set_advantage(tree, node, advantage):
        """Updates the exact min/max over the current advantages; True when an extreme may have been lost and a
        rescan is needed (the node holding it moved inwards)."""
        tree.adv[node] = advantage
        if tree.argmin < 0:
            tree.adv_min = tree.adv_max = advantage
            tree.argmin = tree.argmax = node
            return False
        rescan = False
        if advantage <= tree.adv_min:
            tree.adv_min = advantage
            tree.argmin = node
        elif node == tree.argmin:
            rescan = True
        if advantage >= tree.adv_max:
            tree.adv_max = advantage
            tree.argmax = node
        elif node == tree.argmax:
            rescan = True
        return rescan

    @staticmethod
    def _rescan_min_max(tree):
        adv = tree.adv
        lo = hi = adv[1]
        argmin = argmax = 1
        for node in range(2, tree.num_nodes):
            if adv[node] < lo:
                lo = adv[node]
                argmin = node
            if adv[node] > hi:
                hi = adv[node]
                argmax = node
        tree.adv_min, tree.adv_max, tree.argmin, tree.argmax = lo, hi, argmin, argmax

    # -------------------------------------------------------------------------------------------------- results
    def _check_prepared(self, what):
        if self._phase == "reset":
            raise ValueError(f"{what}() called before prepare()")

    @one_thread_at_a_time
    def root_values(self):
        """V^rho_lambda(root) per tree, [B] float32."""
        self._check_prepared("root_values")
        return np.array([tree.value[0] for tree in self._trees], dtype=np.float32)

    @one_thread_at_a_time
    def root_children(self):
        """Padded statistics of the sampled root children (K_s = sampled_actions slots, lexicographic order):
        ``actions`` [B, K_s, N] int32 (-1 pad), ``visits`` [B, K_s] int32, ``q_values`` [B, K_s] f32
        (r + gamma * V(child); 0 for unvisited children and padding, the completed Q v_mix for the Gumbel
        root's unvisited children), ``priors`` [B, K_s] f32, ``beta_hat`` [B, K_s] f32 (equal to ``priors`` with
        tau = 1, see the class docstring; the Gumbel root: both the joint prior pi~(a)), ``num_children`` [B] int32,
        ``policy_target`` [B, K_s] f32 (the visit shares n / sum n, computed in float32; the Gumbel root: the
        improved policy softmax(log pi~ + sigma(completed Q)) over its children), ``selected`` [B] int32 (the most
        visited child, first in order on ties; the Gumbel root: Sequential Halving's winner, the most visited
        child with the largest g + log pi~ + sigma(completed Q))."""
        self._check_prepared("root_children")
        B, N = self.num_roots, self.n_agents
        slots = (B, self.sampled_actions)
        out = dict(actions=np.full((*slots, N), -1, dtype=np.int32), visits=np.zeros(slots, dtype=np.int32),
                   q_values=np.zeros(slots, dtype=np.float32), priors=np.zeros(slots, dtype=np.float32),
                   beta_hat=np.zeros(slots, dtype=np.float32), num_children=np.zeros(B, dtype=np.int32),
                   policy_target=np.zeros(slots, dtype=np.float32), selected=np.zeros(B, dtype=np.int32))
        for b, tree in enumerate(self._trees):
            m = tree.num_children[0]
            out["num_children"][b] = m
            for c in range(m):
                out["actions"][b, c] = tree.edge_action[c]
                out["priors"][b, c] = out["beta_hat"][b, c] = tree.edge_prior[c]
                child = tree.edge_child[c]
                if child >= 0:
                    out["visits"][b, c] = tree.visits[child]
                    out["q_values"][b, c] = tree.reward[child] + self.gamma * tree.value[child]
            visits = out["visits"][b]
            if self._gumbel_root:
                sigma, q = self._sigma(tree)
                out["q_values"][b, :m] = q
                out["policy_target"][b, :m] = self._improved_policy(tree.root_log_prior, sigma)
                most = max(visits[:m])
                best = -math.inf
                for c in range(m):
                    if visits[c] == most and tree.root_score[c] + sigma[c] > best:
                        best = tree.root_score[c] + sigma[c]
                        out["selected"][b] = c
            else:
                total = np.float32(max(int(visits.sum()), 1))
                out["policy_target"][b] = visits.astype(np.float32) / total
                out["selected"][b] = int(np.argmax(visits))
        return out

    @staticmethod
    def _improved_policy(log_prior, sigma):
        """softmax(log pi~ + sigma(completed Q)) over the root's children (Danihelka et al. 2022, Eq. 11)."""
        logits = [lp + s for lp, s in zip(log_prior, sigma)]
        top = logits[0]
        for x in logits:
            if x > top:
                top = x
        weights = [math.exp(x - top) for x in logits]
        total = 0.0
        for w in weights:
            total += w
        return [w / total for w in weights]

    @one_thread_at_a_time
    def marginal_visits(self):
        """Root child visits summed onto each agent's action, [B, N, A] int32."""
        self._check_prepared("marginal_visits")
        out = np.zeros((self.num_roots, self.n_agents, self.n_actions), dtype=np.int32)
        for b, tree in enumerate(self._trees):
            for c in range(tree.num_children[0]):
                child = tree.edge_child[c]
                if child >= 0:
                    for i, a in enumerate(tree.edge_action[c]):
                        out[b, i, a] += tree.visits[child]
        return out

    @one_thread_at_a_time
    def node_values(self):
        """V of every node by pool index, [B, num_simulations + 1] float32, NaN for nodes not created yet."""
        self._check_prepared("node_values")
        out = np.full((self.num_roots, self.num_simulations + 1), np.nan, dtype=np.float32)
        for b, tree in enumerate(self._trees):
            out[b, :tree.num_nodes] = tree.value[:tree.num_nodes]
        return out

    @one_thread_at_a_time
    def node_children(self, b, node):
        """The child edges of the node at pool index ``node`` of tree ``b``, in their (lexicographic) order:
        ``(children [C] int32, priors [C] float64)``, the pool index of each child (-1 while not expanded) and its
        prior beta_hat (the Gumbel root: pi~(a)), C = the node's number of children."""
        self._check_prepared("node_children")
        b, node = _checks.node_params(b, node, self.num_roots, [t.num_nodes for t in self._trees])
        tree = self._trees[b]
        edges = range(node * self.sampled_actions, node * self.sampled_actions + tree.num_children[node])
        return (np.array([tree.edge_child[e] for e in edges], dtype=np.int32),
                np.array([tree.edge_prior[e] for e in edges], dtype=np.float64))

    @one_thread_at_a_time
    def advantage_bounds(self):
        """The min-max normaliser per tree: ``(min [B], max [B])`` float32 over the current advantages of every
        expanded non-root node (NaN while a tree has none)."""
        self._check_prepared("advantage_bounds")
        lo = np.array([t.adv_min if t.argmin >= 0 else np.nan for t in self._trees], dtype=np.float32)
        hi = np.array([t.adv_max if t.argmax >= 0 else np.nan for t in self._trees], dtype=np.float32)
        return lo, hi
