# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled MAZero search tree: `SampledTrees`, the same API and results as `mcts.ptree.SampledTrees`.

Semantics, the latent-pool index convention and tie-breaking are documented on the class below and in
docs/mcts.md; ptree.py is the readable reference. Every floating-point expression here is evaluated in double in the
same order as in ptree.py (the build passes -ffp-contract=off so no FMA changes a rounding), which is what makes the
two trees select identically.

Memory: struct-of-arrays pools allocated once per object. Per tree: S+1 nodes (node i's latent lives at pool
index i), (S+1)*K_s child edges (K_s = sampled_actions; node i owns edge slots i*K_s .. i*K_s+K_s-1), and an
OS(lambda) bump arena of Slots. Node i's region holds its returns grouped by relative depth, each group sorted
descending, interleaved slot by slot with the per-depth counts and kept sums (struct Slot); it starts with REGION_MIN
slots and moves to the top of the arena with twice the room when full (at most S+1-i slots: the returns its subtree
can send it). A new search only resets counters; an arena that runs out of room is grown with realloc in the checking
phase of expand(), before any tree changes, and keeps its size for later searches.
"""
from libc.math cimport INFINITY, ceil, exp, expm1, fabs, isfinite, log, log1p, sqrt
from libc.stdint cimport int16_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

import functools

cimport numpy as cnp
import numpy as np

from mcts import _checks

cnp.import_array()

cdef double U32_TO_UNIT = 1.0 / 4294967296.0  # 2**-32: u32 * this is an exact double in [0, 1)
cdef double ROOT_PRIOR_FLOOR = 1e-4  # see ptree._ROOT_PRIOR_FLOOR
cdef double KEEP_EPS = 1e-9  # see ptree._KEEP_EPS
cdef double LN2 = 0.6931471805599453  # see ptree._LN2
# Sizes measured on random searches (S = 100, K_s = 10, 5 agents): nodes hold 4 returns on average, so regions start
# at 2 slots and the regions of a tree, moves included, take about 5 slots per node.
cdef int REGION_MIN = 2  # initial OS(lambda) slots of a node
cdef int ARENA_SLOTS_PER_NODE = 6  # initial arena per tree, in slots per node; grows on demand
cdef uint64_t PCG_MULT = 6364136223846793005ULL

# Error codes of the per-tree input checks (first failure per tree wins).
cdef enum:
    OK = 0
    PROBS_NOT_FINITE = 1
    PROBS_NEGATIVE = 2
    PROBS_ZERO_MASS = 3
    NO_AVAIL_ACTION = 4
    NOISE_NOT_FINITE = 5
    NOISE_NEGATIVE = 6
    VALUE_NOT_FINITE = 7
    REWARD_NOT_FINITE = 8
    OUT_OF_MEMORY = 9

_ERROR_TEXT = {
    PROBS_NOT_FINITE: "probs contains NaN or inf (tree {b}, agent {i})",
    PROBS_NEGATIVE: "probs contains negative entries (tree {b}, agent {i})",
    PROBS_ZERO_MASS: "probs of tree {b}, agent {i} sums to 0: cannot sample an action",
    NO_AVAIL_ACTION: "avail_actions has no available action for tree {b}, agent {i}",
    NOISE_NOT_FINITE: "noise contains NaN or inf (tree {b}, agent {i})",
    NOISE_NEGATIVE: "noise contains negative entries (tree {b}, agent {i})",
    VALUE_NOT_FINITE: "values contains NaN or inf (tree {b})",
    REWARD_NOT_FINITE: "rewards contains NaN or inf (tree {b})",
}


cdef struct Slot:
    # Slot k of a node's OS(lambda) region holds its k-th stored return (grouped by depth, each group sorted
    # descending) and the statistics of relative depth k: both grow from the region's start, so a node with few
    # returns touches one cache line, not four.
    double ret
    double top  # sum of the kept returns at depth k
    int count  # returns at depth k
    int keep  # kept returns at depth k


cdef struct Pools:
    int B, N, A, sampled_actions, S
    double one_minus_rho, gamma, pb_c_base, pb_c_init, value_delta_min
    bint use_os_lambda
    bint gumbel_root  # root_search == "gumbel" (docs/gumbel.md)
    double gumbel_c_visit, gumbel_c_scale
    int* halving  # [(K_s+1) * S]: Sequential Halving's schedule for m root children at m * S .. m * S + S - 1
    double* lam_pow  # os_lambda**d, d = 0..S, built by repeated multiplication as in ptree
    double* sqrt_visits  # sqrt(N_s) and pb_c_init + log((N_s + pb_c_base + 1) / pb_c_base) for N_s = 0..S,
    double* c_term  # the same expressions ptree evaluates inline
    # nodes [B * (S+1)]
    int* parent
    int* visits
    int* num_children
    int* num_depths
    double* v_hat
    double* reward
    double* value
    double* adv  # r + gamma * V(node) - v_hat(parent): the advantage of the edge into the node
    double* return_sum
    # edges [B * (S+1) * K_s], joint actions [B * (S+1) * K_s * N]
    int* edge_child
    double* edge_prior
    int16_t* edge_action
    # OS(lambda): per node [B * (S+1)] its region's offset in the tree's arena and capacity (slots); per tree [B]
    # the arena, its capacity and its bump pointer
    Py_ssize_t* region
    int* region_cap
    Slot** arena
    Py_ssize_t* arena_cap
    Py_ssize_t* arena_top
    # per tree [B]
    int* num_nodes
    double* adv_min
    double* adv_max
    int* argmin  # -1 while the tree has no non-root node
    int* argmax
    int* pending_parent
    int* pending_edge
    uint64_t* rng_state
    uint64_t* rng_inc
    int* error
    int* error_agent
    # scratch: per-agent CDFs [B * N * A] (the Gumbel root: the masked priors pi~), one sampled joint action [B * N]
    double* cdf
    int16_t* row
    # Gumbel root, per root child slot [B * K_s]: log pi~(a), g(a) + log pi~(a), and scratch for the completed Q and
    # sigma; the beam search's two beams per tree [B * 2 * K_s] (prefixes [B * 2 * K_s * N]), the parent entry and
    # action of each next-beam entry [B * K_s], and one entry's (perturbed) children's values [B * A]
    double* root_log_prior
    double* root_prior_ratio  # pi~(a) / max over the root's children, cached for v_mix
    double* root_score
    double* completed_q
    double* sigma
    int16_t* beam_prefix
    double* beam_phi
    double* beam_score
    int* beam_parent
    int16_t* beam_action
    double* perturbed
    int* beam_order  # [B * K_s]: one entry's best extensions, by perturbed value


# ------------------------------------------------------------------------------------------------------- PCG32
cdef inline uint32_t pcg_next(Pools* P, int b) noexcept nogil:
    cdef uint64_t old = P.rng_state[b]
    P.rng_state[b] = old * PCG_MULT + P.rng_inc[b]
    cdef uint32_t xorshifted = <uint32_t>(((old >> 18) ^ old) >> 27)
    cdef uint32_t rot = <uint32_t>(old >> 59)
    return (xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))


cdef inline uint32_t pcg_bounded(Pools* P, int b, uint32_t n) noexcept nogil:
    return <uint32_t>((<uint64_t>pcg_next(P, b) * <uint64_t>n) >> 32)


cdef void pcg_seed(Pools* P, int b, uint64_t initstate, uint64_t initseq) noexcept nogil:
    P.rng_state[b] = 0
    P.rng_inc[b] = (initseq << 1) | 1
    pcg_next(P, b)
    P.rng_state[b] += initstate
    pcg_next(P, b)


# ------------------------------------------------------------------------------------------- input -> CDFs
cdef int root_cdfs(Pools* P, int b, const float* probs, const uint8_t* avail_actions, const float* noise,
                   double noise_eps) noexcept nogil:
    """Checks tree b's root inputs and writes the per-agent CDFs of the root sampling distribution
    (1-eps) * pi~ + eps * eta~ over available actions (the Gumbel root: log pi~ instead, -inf where unavailable).
    Returns an error code (agent in P.error_agent[b])."""
    cdef int N = P.N, A = P.A, i, a
    cdef double total, noise_total, acc, one_minus_eps = 1.0 - noise_eps
    cdef float x
    cdef bint any_available
    cdef const float* p
    cdef const float* eta
    cdef const uint8_t* m
    cdef double* cdf
    for i in range(N):
        p = probs + (<Py_ssize_t>b * N + i) * A
        m = avail_actions + (<Py_ssize_t>b * N + i) * A
        cdf = P.cdf + (<Py_ssize_t>b * N + i) * A
        P.error_agent[b] = i
        any_available = False
        for a in range(A):
            x = p[a]
            if not isfinite(x):
                return PROBS_NOT_FINITE
            if x < 0:
                return PROBS_NEGATIVE
            if m[a]:
                any_available = True
        if not any_available:
            return NO_AVAIL_ACTION
        total = 0.0
        for a in range(A):
            cdf[a] = <double>p[a] + ROOT_PRIOR_FLOOR if m[a] else 0.0
            total += cdf[a]
        for a in range(A):
            cdf[a] = cdf[a] / total
        if noise != NULL:
            eta = noise + (<Py_ssize_t>b * N + i) * A
            noise_total = 0.0
            for a in range(A):
                x = eta[a]
                if not isfinite(x):
                    return NOISE_NOT_FINITE
                if x < 0:
                    return NOISE_NEGATIVE
                if m[a]:
                    noise_total += <double>x + ROOT_PRIOR_FLOOR
            for a in range(A):
                if m[a]:
                    cdf[a] = one_minus_eps * cdf[a] + noise_eps * ((<double>eta[a] + ROOT_PRIOR_FLOOR) / noise_total)
        if P.gumbel_root:  # the Gumbel root reads log pi~ (its noise is None), -inf where unavailable
            for a in range(A):
                cdf[a] = log(cdf[a]) if m[a] else -INFINITY
            continue
        acc = 0.0
        for a in range(A):
            acc += cdf[a]
            cdf[a] = acc
    return OK


cdef int leaf_cdfs(Pools* P, int b, const float* probs) noexcept nogil:
    """Checks tree b's leaf policy and writes its per-agent CDFs (raw probs, no availability mask)."""
    cdef int N = P.N, A = P.A, i, a
    cdef double acc
    cdef float x
    cdef const float* p
    cdef double* cdf
    for i in range(N):
        p = probs + (<Py_ssize_t>b * N + i) * A
        cdf = P.cdf + (<Py_ssize_t>b * N + i) * A
        P.error_agent[b] = i
        acc = 0.0
        for a in range(A):
            x = p[a]
            if not isfinite(x):
                return PROBS_NOT_FINITE
            if x < 0:
                return PROBS_NEGATIVE
            acc += x
            cdf[a] = acc
        if acc <= 0.0:
            return PROBS_ZERO_MASS
    return OK


# ---------------------------------------------------------------------------------------------- expansion
cdef inline int compare_rows(const int16_t* x, const int16_t* y, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        if x[i] != y[i]:
            return -1 if x[i] < y[i] else 1
    return 0


cdef extern from *:
    """
    /* Index of the first cdf entry > target: bisect_right on a non-decreasing cdf (ptree bisects). For short rows
       it counts the entries <= target, two doubles per vector compare (GCC/Clang vector extensions) with no
       branches: the draws are random, so a branching search mispredicts about every other step. Longer rows use
       a branch-free binary search. */
    #include <string.h>
    static inline int mcts_first_above(const double *cdf, int n, double target) {
        if (n <= 32) {
            typedef double v2d __attribute__((vector_size(16)));
            typedef long long v2l __attribute__((vector_size(16)));
            v2d t = {target, target};
            v2l acc0 = {0, 0}, acc1 = {0, 0};
            int a = 0;
            for (; a + 4 <= n; a += 4) {
                v2d c0, c1;
                memcpy(&c0, cdf + a, sizeof c0);
                memcpy(&c1, cdf + a + 2, sizeof c1);
                acc0 -= (v2l)(c0 <= t);  /* true lanes are -1 */
                acc1 -= (v2l)(c1 <= t);
            }
            long long count = acc0[0] + acc0[1] + acc1[0] + acc1[1];
            for (; a < n; a++) count += cdf[a] <= target;
            return (int)count;
        }
        int base = 0;
        while (n > 1) {
            int half = n >> 1;
            base = cdf[base + half - 1] <= target ? base + half : base;
            n -= half;
        }
        return base + (cdf[base] <= target);
    }
    """
    int first_above "mcts_first_above"(const double* cdf, int n, double target) noexcept nogil


cdef void sample_children(Pools* P, int b, int node) noexcept nogil:
    """K_s i.i.d. joint actions (sample-major, agent-minor draws) from the CDFs in scratch, deduplicated into the
    node's edge slots in ascending lexicographic order, prior = count / K_s."""
    cdef int N = P.N, A = P.A, sampled_actions = P.sampled_actions, k, i, pos, found, unique = 0, cmp
    cdef Py_ssize_t e0 = (<Py_ssize_t>b * (P.S + 1) + node) * sampled_actions
    cdef int16_t* actions = P.edge_action + e0 * N
    cdef double* counts = P.edge_prior + e0
    cdef int16_t* row = P.row + <Py_ssize_t>b * N
    cdef const double* cdf
    cdef double target
    for k in range(sampled_actions):
        for i in range(N):
            cdf = P.cdf + (<Py_ssize_t>b * N + i) * A
            target = (<double>pcg_next(P, b) * U32_TO_UNIT) * cdf[A - 1]
            row[i] = <int16_t>first_above(cdf, A, target)
        pos = 0
        found = 0
        while pos < unique:
            cmp = compare_rows(actions + <Py_ssize_t>pos * N, row, N)
            if cmp == 0:
                found = 1
                break
            if cmp > 0:
                break
            pos += 1
        if found:
            counts[pos] += 1.0
        else:
            memmove(actions + <Py_ssize_t>(pos + 1) * N, actions + <Py_ssize_t>pos * N,
                    <size_t>(unique - pos) * N * sizeof(int16_t))
            memmove(counts + pos + 1, counts + pos, <size_t>(unique - pos) * sizeof(double))
            for i in range(N):
                actions[<Py_ssize_t>pos * N + i] = row[i]
            counts[pos] = 1.0
            unique += 1
    for k in range(unique):
        counts[k] = counts[k] / sampled_actions
        P.edge_child[e0 + k] = -1
    cdef Py_ssize_t n = <Py_ssize_t>b * (P.S + 1) + node
    P.num_children[n] = unique
    P.num_depths[n] = 0
    P.return_sum[n] = 0.0


# ------------------------------------------------------------------------------------------- Gumbel root
cdef inline double gumbel(Pools* P, int b) noexcept nogil:
    """A standard Gumbel draw -log(-log u), u = (u32 + 1/2) * 2**-32 in (0, 1) (ptree.gumbel)."""
    return -log(-log((<double>pcg_next(P, b) + 0.5) * U32_TO_UNIT))


cdef inline double truncated_gumbel(double bound, double maximum, double perturbed) noexcept nogil:
    """Kool et al. 2019, Eq. 23, stable form: -log(e^-bound - e^-maximum + e^-perturbed) (ptree.truncated_gumbel)."""
    if perturbed >= maximum:
        return bound
    cdef double x = perturbed - maximum
    cdef double log1mexp = log(-expm1(x)) if x > -LN2 else log1p(-exp(x))
    cdef double v = bound - perturbed + log1mexp
    return bound - (v if v > 0.0 else 0.0) - log1p(exp(-fabs(v)))


cdef void gumbel_children(Pools* P, int b, bint noise) noexcept nogil:
    """The root's children by Gumbel-top-k over the factorised prior pi~ (in scratch), by stochastic beam search over
    the agents; stored in lexicographic order with prior pi~(a), log pi~(a) and the score g(a) + log pi~(a)
    (ptree._gumbel_children says how)."""
    cdef int N = P.N, A = P.A, sampled_actions = P.sampled_actions
    cdef int i, a, e, j, k, pos, size = 1, next_size, cur = 0, order_size
    cdef double base_phi, bound, maximum, score
    cdef const double* log_pi
    cdef int16_t* prefix[2]
    cdef double* phi[2]
    cdef double* G[2]
    for j in range(2):
        prefix[j] = P.beam_prefix + (<Py_ssize_t>b * 2 + j) * sampled_actions * N
        phi[j] = P.beam_phi + (<Py_ssize_t>b * 2 + j) * sampled_actions
        G[j] = P.beam_score + (<Py_ssize_t>b * 2 + j) * sampled_actions
    cdef int* parent = P.beam_parent + <Py_ssize_t>b * sampled_actions
    cdef int16_t* action = P.beam_action + <Py_ssize_t>b * sampled_actions
    cdef double* value = P.perturbed + <Py_ssize_t>b * A
    cdef int* order = P.beam_order + <Py_ssize_t>b * sampled_actions
    phi[0][0] = 0.0
    G[0][0] = gumbel(P, b) if noise else 0.0
    for i in range(N):
        log_pi = P.cdf + (<Py_ssize_t>b * N + i) * A
        next_size = 0
        for e in range(size):
            base_phi = phi[cur][e]
            bound = G[cur][e]
            maximum = -INFINITY
            for a in range(A):
                if log_pi[a] > -INFINITY:
                    value[a] = base_phi + log_pi[a]
                    if noise:
                        value[a] = value[a] + gumbel(P, b)
                    if value[a] > maximum:
                        maximum = value[a]
            # The shift is increasing in the perturbed value, so only this entry's K_s best can enter the beam, in
            # this order: the others' shifts are never computed.
            order_size = 0
            for a in range(A):
                if not log_pi[a] > -INFINITY:
                    continue
                pos = order_size
                while pos > 0 and value[order[pos - 1]] < value[a]:
                    pos -= 1
                if pos >= sampled_actions:
                    continue
                j = order_size if order_size < sampled_actions else sampled_actions - 1
                while j > pos:
                    order[j] = order[j - 1]
                    j -= 1
                order[pos] = a
                if order_size < sampled_actions:
                    order_size += 1
            for k in range(order_size):
                a = order[k]
                score = truncated_gumbel(bound, maximum, value[a]) if noise else value[a]
                pos = next_size
                while pos > 0 and G[1 - cur][pos - 1] < score:
                    pos -= 1
                if pos >= sampled_actions:
                    break
                # the last entry drops out when the beam is full
                j = next_size if next_size < sampled_actions else sampled_actions - 1
                while j > pos:
                    G[1 - cur][j] = G[1 - cur][j - 1]
                    phi[1 - cur][j] = phi[1 - cur][j - 1]
                    parent[j] = parent[j - 1]
                    action[j] = action[j - 1]
                    j -= 1
                G[1 - cur][pos] = score
                phi[1 - cur][pos] = base_phi + log_pi[a]
                parent[pos] = e
                action[pos] = <int16_t>a
                if next_size < sampled_actions:
                    next_size += 1
        for j in range(next_size):
            if i > 0:
                memcpy(prefix[1 - cur] + <Py_ssize_t>j * N, prefix[cur] + <Py_ssize_t>parent[j] * N,
                       <size_t>i * sizeof(int16_t))
            prefix[1 - cur][<Py_ssize_t>j * N + i] = action[j]
        cur = 1 - cur
        size = next_size
    # the beam's entries into the root's edge slots, in ascending lexicographic order
    cdef Py_ssize_t e0 = <Py_ssize_t>b * (P.S + 1) * sampled_actions
    cdef int16_t* actions = P.edge_action + e0 * N
    cdef double* log_prior = P.root_log_prior + <Py_ssize_t>b * sampled_actions
    cdef double* scores = P.root_score + <Py_ssize_t>b * sampled_actions
    for e in range(size):
        pos = 0
        while pos < e and compare_rows(actions + <Py_ssize_t>pos * N, prefix[cur] + <Py_ssize_t>e * N, N) < 0:
            pos += 1
        memmove(actions + <Py_ssize_t>(pos + 1) * N, actions + <Py_ssize_t>pos * N,
                <size_t>(e - pos) * N * sizeof(int16_t))
        memmove(log_prior + pos + 1, log_prior + pos, <size_t>(e - pos) * sizeof(double))
        memmove(scores + pos + 1, scores + pos, <size_t>(e - pos) * sizeof(double))
        memcpy(actions + <Py_ssize_t>pos * N, prefix[cur] + <Py_ssize_t>e * N, <size_t>N * sizeof(int16_t))
        log_prior[pos] = phi[cur][e]
        scores[pos] = G[cur][e]
    cdef double top = log_prior[0]
    for e in range(1, size):
        if log_prior[e] > top:
            top = log_prior[e]
    for e in range(size):
        P.edge_child[e0 + e] = -1
        P.edge_prior[e0 + e] = exp(log_prior[e])
        P.root_prior_ratio[<Py_ssize_t>b * sampled_actions + e] = exp(log_prior[e] - top)
    cdef Py_ssize_t n = <Py_ssize_t>b * (P.S + 1)
    P.num_children[n] = size
    P.num_depths[n] = 0
    P.return_sum[n] = 0.0


cdef int root_sigma(Pools* P, int b) noexcept nogil:
    """Writes the completed Q (Danihelka et al. 2022, Eq. 10, App. D; ptree._completed_q) and sigma(q^) of tree
    b's root children into scratch; returns their number m."""
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1), e0 = n0 * P.sampled_actions
    cdef int m = P.num_children[n0], c, child, n, visit_sum = 0, max_visits = 0
    cdef double* q = P.completed_q + <Py_ssize_t>b * P.sampled_actions
    cdef double* sigma = P.sigma + <Py_ssize_t>b * P.sampled_actions
    cdef const double* prior_ratio = P.root_prior_ratio + <Py_ssize_t>b * P.sampled_actions
    cdef double weighted = 0.0, prior_sum = 0.0, prior, v_mix, lo, hi, span, scale
    for c in range(m):
        child = P.edge_child[e0 + c]
        if child >= 0:
            n = P.visits[n0 + child]
            q[c] = P.reward[n0 + child] + P.gamma * P.value[n0 + child]
            prior = prior_ratio[c]  # pi(b) / max pi: the common factor cancels
            weighted += prior * q[c]
            prior_sum += prior
            visit_sum += n
            if n > max_visits:
                max_visits = n
    v_mix = P.v_hat[n0]
    if visit_sum > 0:
        v_mix = (v_mix + <double>visit_sum * (weighted / prior_sum)) / (1.0 + visit_sum)
    for c in range(m):
        if P.edge_child[e0 + c] < 0:
            q[c] = v_mix
    lo = q[0]
    hi = q[0]
    for c in range(m):
        if q[c] < lo:
            lo = q[c]
        if q[c] > hi:
            hi = q[c]
    span = hi - lo
    if span < P.value_delta_min:
        span = P.value_delta_min
    scale = (P.gumbel_c_visit + max_visits) * P.gumbel_c_scale
    for c in range(m):
        sigma[c] = scale * ((q[c] - lo) / span)
    return m


cdef int halving_child(Pools* P, int b, int sims_done) noexcept nogil:
    """Sequential Halving at the root (ptree._halving_child): among the children with the schedule's visit count
    for this simulation, the largest g + log pi~ + sigma(completed Q), first on ties."""
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1), e0 = n0 * P.sampled_actions
    cdef int m = root_sigma(P, b), c, child, n, choice = -1
    cdef int target = P.halving[m * P.S + sims_done]
    cdef const double* scores = P.root_score + <Py_ssize_t>b * P.sampled_actions
    cdef const double* sigma = P.sigma + <Py_ssize_t>b * P.sampled_actions
    cdef double best = -INFINITY, score
    for c in range(m):
        child = P.edge_child[e0 + c]
        n = P.visits[n0 + child] if child >= 0 else 0
        if n != target:
            continue
        score = scores[c] + sigma[c]
        if score > best:
            best = score
            choice = c
    return choice


# ------------------------------------------------------------------------------------------------- backup
cdef inline int keep_count(int count, double one_minus_rho) noexcept nogil:
    cdef int keep = <int>ceil(count * one_minus_rho - KEEP_EPS)
    return keep if keep > 1 else 1


cdef inline int grown_capacity(int cap, int entries, int limit) noexcept nogil:
    """Capacity a region must move to so it holds `entries` returns (a node has at most as many depths as returns),
    doubling and at most `limit`; 0 when it fits."""
    if entries <= cap:
        return 0
    cdef int grown = 2 * cap
    if grown < entries:
        grown = entries
    return grown if grown < limit else limit


cdef void new_region(Pools* P, int b, int node) noexcept nogil:
    cdef Py_ssize_t n = <Py_ssize_t>b * (P.S + 1) + node
    cdef int cap = REGION_MIN if REGION_MIN < P.S + 1 - node else P.S + 1 - node
    P.region[n] = P.arena_top[b]
    P.region_cap[n] = cap
    P.arena_top[b] += cap


cdef Py_ssize_t arena_needed(Pools* P, int b) noexcept nogil:
    """Slots the next expand() of tree b bumps: the leaf's region plus every path node whose region must grow."""
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1)
    cdef int leaf = P.num_nodes[b], node = P.pending_parent[b]
    cdef Py_ssize_t needed = REGION_MIN if REGION_MIN < P.S + 1 - leaf else P.S + 1 - leaf
    while True:
        needed += grown_capacity(P.region_cap[n0 + node], P.visits[n0 + node] + 1, P.S + 1 - node)
        if node == 0:
            return needed
        node = P.parent[n0 + node]


cdef int reserve_arena(Pools* P, int b, Py_ssize_t needed) noexcept nogil:
    if P.arena_top[b] + needed <= P.arena_cap[b]:
        return OK
    cdef Py_ssize_t cap = 2 * P.arena_cap[b]
    if cap < P.arena_top[b] + needed:
        cap = P.arena_top[b] + needed
    cdef Slot* grown = <Slot*>realloc(P.arena[b], <size_t>cap * sizeof(Slot))
    if grown == NULL:
        return OUT_OF_MEMORY
    P.arena[b] = grown
    P.arena_cap[b] = cap
    return OK


cdef void add_return(Pools* P, int b, int node, int depth, double ret) noexcept nogil:
    """Adds one return at relative depth `depth` to the node (whose visit count already includes it) and
    recomputes its value V."""
    cdef Py_ssize_t n = <Py_ssize_t>b * (P.S + 1) + node
    if not P.use_os_lambda:
        P.return_sum[n] += ret
        P.value[n] = P.return_sum[n] / P.visits[n]
        return
    cdef int num_depths = P.num_depths[n], d, start = 0, seg_len, pos, keep, k
    cdef int stored = P.visits[n] - 1  # returns in the region before this one
    cdef int cap = grown_capacity(P.region_cap[n], stored + 1, P.S + 1 - node)
    if cap:  # move to the top of the arena (room reserved by arena_needed in the checking phase)
        memcpy(P.arena[b] + P.arena_top[b], P.arena[b] + P.region[n], <size_t>stored * sizeof(Slot))
        P.region[n] = P.arena_top[b]
        P.region_cap[n] = cap
        P.arena_top[b] += cap
    cdef Slot* slots = P.arena[b] + P.region[n]
    if depth == num_depths:
        slots[depth].count = 0
        num_depths += 1
        P.num_depths[n] = num_depths
    for d in range(depth):
        start += slots[d].count
    cdef Slot* seg = slots + start
    seg_len = slots[depth].count
    pos = 0
    while pos < seg_len and seg[pos].ret >= ret:
        pos += 1
    k = stored - start
    while k > pos:  # shift this depth's smaller returns and all deeper ones up by one slot
        seg[k].ret = seg[k - 1].ret
        k -= 1
    seg[pos].ret = ret
    seg_len += 1
    slots[depth].count = seg_len
    keep = keep_count(seg_len, P.one_minus_rho)
    cdef double top = 0.0
    for k in range(keep):
        top += seg[k].ret
    slots[depth].top = top
    slots[depth].keep = keep
    cdef double weighted_sum = 0.0, weight = 0.0
    for d in range(num_depths):
        weighted_sum += P.lam_pow[d] * slots[d].top
        weight += P.lam_pow[d] * slots[d].keep
    P.value[n] = weighted_sum / weight


cdef bint set_advantage(Pools* P, int b, int node, double advantage) noexcept nogil:
    """Exact running min/max over the current advantages; True when the node holding an extreme moved inwards and
    the extremes must be rescanned."""
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1)
    P.adv[n0 + node] = advantage
    if P.argmin[b] < 0:
        P.adv_min[b] = advantage
        P.adv_max[b] = advantage
        P.argmin[b] = node
        P.argmax[b] = node
        return False
    cdef bint rescan = False
    if advantage <= P.adv_min[b]:
        P.adv_min[b] = advantage
        P.argmin[b] = node
    elif node == P.argmin[b]:
        rescan = True
    if advantage >= P.adv_max[b]:
        P.adv_max[b] = advantage
        P.argmax[b] = node
    elif node == P.argmax[b]:
        rescan = True
    return rescan


cdef void rescan_min_max(Pools* P, int b) noexcept nogil:
    cdef const double* adv = P.adv + <Py_ssize_t>b * (P.S + 1)
    cdef double lo = adv[1], hi = adv[1]
    cdef int argmin = 1, argmax = 1, node
    for node in range(2, P.num_nodes[b]):
        if adv[node] < lo:
            lo = adv[node]
            argmin = node
        if adv[node] > hi:
            hi = adv[node]
            argmax = node
    P.adv_min[b] = lo
    P.adv_max[b] = hi
    P.argmin[b] = argmin
    P.argmax[b] = argmax


cdef void backup(Pools* P, int b, int leaf, double leaf_value) noexcept nogil:
    """Node s_i on the path s_0..s_L gets one return at relative depth L - i:
    G_L = v_L, G_i = r(s_{i+1}) + gamma * G_{i+1}."""
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1)
    cdef double ret = leaf_value
    cdef int node = leaf, depth = 0, parent
    cdef bint rescan = False
    while True:
        P.visits[n0 + node] += 1
        add_return(P, b, node, depth, ret)
        if node == 0:
            break
        parent = P.parent[n0 + node]
        if set_advantage(P, b, node,
                         P.reward[n0 + node] + P.gamma * P.value[n0 + node] - P.v_hat[n0 + parent]):
            rescan = True
        ret = P.reward[n0 + node] + P.gamma * ret
        node = parent
        depth += 1
    if rescan:
        rescan_min_max(P, b)


# ------------------------------------------------------------------------------------------- per-tree steps
cdef void prepare_tree(Pools* P, int b, double root_value, bint gumbel_noise) noexcept nogil:
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1)
    P.num_nodes[b] = 1
    P.parent[n0] = -1
    P.v_hat[n0] = root_value
    P.reward[n0] = 0.0
    P.visits[n0] = 0
    P.argmin[b] = -1
    P.argmax[b] = -1
    if P.use_os_lambda:
        P.arena_top[b] = 0
        new_region(P, b, 0)
    if P.gumbel_root:
        gumbel_children(P, b, gumbel_noise)
    else:
        sample_children(P, b, 0)
    backup(P, b, 0, root_value)


cdef int select_child(Pools* P, int b, int node) noexcept nogil:
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1)
    cdef Py_ssize_t e0 = (n0 + node) * P.sampled_actions
    cdef int n_parent = P.visits[n0 + node] - 1  # N_s = sum of the children's visits
    cdef double sqrt_n = P.sqrt_visits[n_parent]
    cdef double c_term = P.c_term[n_parent]
    # Never empty here: root forcing expands a root child before the first pUCT choice.
    cdef double lo = P.adv_min[b]
    cdef double span = P.adv_max[b] - lo
    if span < P.value_delta_min:
        span = P.value_delta_min
    cdef double best = -INFINITY, q, score
    cdef int choice = -1, ties = 0, c, child, n_child
    for c in range(P.num_children[n0 + node]):
        child = P.edge_child[e0 + c]
        if child >= 0:
            n_child = P.visits[n0 + child]
            q = (P.adv[n0 + child] - lo) / span
        else:
            n_child = 0
            q = (0.0 - lo) / span  # unvisited: advantage 0, i.e. the parent's predicted value
        if q < 0.0:
            q = 0.0
        elif q > 1.0:
            q = 1.0
        score = q + P.edge_prior[e0 + c] * sqrt_n / (1.0 + n_child) * c_term
        if score > best:
            best = score
            choice = c
            ties = 1
        elif score == best:
            ties += 1
            if pcg_bounded(P, b, <uint32_t>ties) == 0:
                choice = c
    return choice


cdef void select_tree(Pools* P, int b, int sims_done, int* parents, int* actions) noexcept nogil:
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1)
    cdef int node = 0, edge, i
    if P.gumbel_root:
        edge = halving_child(P, b, sims_done)
        while P.edge_child[n0 * P.sampled_actions + edge] >= 0:
            node = P.edge_child[n0 * P.sampled_actions + edge]
            edge = node * P.sampled_actions + select_child(P, b, node)
    elif sims_done < P.num_children[n0]:
        edge = sims_done  # root forcing: every sampled root child once, in order
    else:
        while True:
            edge = node * P.sampled_actions + select_child(P, b, node)
            if P.edge_child[n0 * P.sampled_actions + edge] < 0:
                break
            node = P.edge_child[n0 * P.sampled_actions + edge]
    P.pending_parent[b] = node
    P.pending_edge[b] = edge
    parents[b] = node
    cdef const int16_t* action = P.edge_action + (n0 * P.sampled_actions + edge) * P.N
    for i in range(P.N):
        actions[<Py_ssize_t>b * P.N + i] = action[i]


cdef void expand_tree(Pools* P, int b, double value, double reward) noexcept nogil:
    cdef Py_ssize_t n0 = <Py_ssize_t>b * (P.S + 1)
    cdef int leaf = P.num_nodes[b]
    P.num_nodes[b] = leaf + 1
    P.parent[n0 + leaf] = P.pending_parent[b]
    P.edge_child[n0 * P.sampled_actions + P.pending_edge[b]] = leaf
    P.v_hat[n0 + leaf] = value
    P.reward[n0 + leaf] = reward
    P.visits[n0 + leaf] = 0
    if P.use_os_lambda:
        new_region(P, b, leaf)
    sample_children(P, b, leaf)
    backup(P, b, leaf, value)


cdef int check_root_inputs(Pools* P, int b, const float* values, const float* probs, const uint8_t* avail_actions,
                           const float* noise, double noise_eps) noexcept nogil:
    if not isfinite(values[b]):
        return VALUE_NOT_FINITE
    return root_cdfs(P, b, probs, avail_actions, noise, noise_eps)


cdef int first_error(Pools* P) noexcept nogil:
    cdef int b
    for b in range(P.B):
        if P.error[b] != OK:
            return b
    return -1


cdef int check_expand_inputs(Pools* P, int b, const float* values, const float* rewards,
                             const float* probs) noexcept nogil:
    if not isfinite(values[b]):
        return VALUE_NOT_FINITE
    if not isfinite(rewards[b]):
        return REWARD_NOT_FINITE
    cdef int error = leaf_cdfs(P, b, probs)
    if error == OK and P.use_os_lambda:
        error = reserve_arena(P, b, arena_needed(P, b))
    return error


# ------------------------------------------------------------------------------------------------- the class
cdef object checked(str name, object value, int typenum, object dtype, tuple shape):
    """`value` itself when it already is an aligned, native, C-contiguous array of `dtype` and `shape` (checked
    through the C API: this runs on every call); otherwise `_checks.array`, which raises or makes it contiguous."""
    cdef cnp.ndarray arr
    cdef int d
    if cnp.PyArray_CheckExact(value):
        arr = <cnp.ndarray>value
        if (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_ISCARRAY_RO(arr) and cnp.PyArray_ISNOTSWAPPED(arr)
                and cnp.PyArray_NDIM(arr) == len(shape)):
            for d in range(len(shape)):
                if cnp.PyArray_DIMS(arr)[d] != <Py_ssize_t>shape[d]:
                    break
            else:
                return value
    return _checks.array(name, value, dtype, shape)


cdef inline void* carve(char* base, size_t* off, size_t size) noexcept nogil:
    cdef size_t start = (off[0] + 63) & ~(<size_t>63)
    off[0] = start + size
    return NULL if base == NULL else <void*>(base + start)


cdef class SampledTrees  # declared here so that the thread guard below can read its `busy_in`


def one_thread_at_a_time(method):
    """`method` raises RuntimeError instead of running while another thread is inside a method of the same object:
    the methods release the GIL and share the pools (two threads at once corrupt the heap). The test and the mark
    run under the GIL with no Python code in between, so two Python threads can never both pass."""
    name = method.__name__

    @functools.wraps(method)
    def guarded(SampledTrees self, *args, **kwargs):
        if self.busy_in is not None:
            raise RuntimeError(_checks.concurrent_use_message(name, self.busy_in))
        self.busy_in = name
        try:
            return method(self, *args, **kwargs)
        finally:
            self.busy_in = None
    return guarded


cdef class SampledTrees:
    """B independent MAZero search trees over sampled joint actions, stepped in lockstep (compiled).

    ``SampledTrees(num_roots, n_agents, n_actions, sampled_actions, num_simulations, *, os_rho, os_lambda, gamma,
    pb_c_base=19652, pb_c_init=1.25, value_delta_min=0.01, seed=0, use_os_lambda=True, root_search="sampled",
    gumbel_c_visit=50.0, gumbel_c_scale=0.1)``

    One search: ``prepare`` (expands the B roots), then ``num_simulations`` times ``select`` -> network -> ``expand``,
    then read ``root_values`` / ``root_children`` / ``marginal_visits``. ``prepare`` starts a new search on the same
    preallocated pools; ``reset`` also does, and can reseed the trees.

    Latent pool convention: the caller keeps latents as ``pool[num_simulations + 1, B, ...]``; ``pool[0]`` holds
    the roots and the leaf created by simulation j (the j-th ``expand``, from 0) goes to ``pool[j + 1]``. ``select``
    returns ``parent_index[b]``, the pool index of the node to extend in tree b, so the caller gathers
    ``pool[parent_index, arange(B)]``, runs the network with ``actions`` and writes the result to ``pool[j + 1]``.

    ``select`` and ``expand`` run without the GIL, one thread over the B trees (docs/mcts.md, "Threads", says why
    there is no OpenMP option). One object serves one Python thread at a time: a call while another thread is
    inside a method of the same object raises RuntimeError. Semantics, tie-breaking and seeding are those of
    ``mcts.ptree.SampledTrees`` (see its docstring and docs/mcts.md).
    """
    cdef Pools P
    cdef readonly int num_roots, n_agents, n_actions, sampled_actions, num_simulations
    cdef readonly double os_rho, os_lambda, gamma, pb_c_base, pb_c_init, value_delta_min
    cdef readonly bint use_os_lambda
    cdef readonly str root_search
    cdef readonly double gumbel_c_visit, gumbel_c_scale
    cdef int sims_done
    cdef int phase  # 0: needs prepare, 1: ready to select, 2: selected, needs expand
    cdef char* block  # every pool below is carved from this one allocation
    cdef object busy_in  # name of the method a thread is running on this object, None when idle

    def __cinit__(self):
        self.block = NULL
        self.busy_in = None

    @one_thread_at_a_time
    def __init__(self, num_roots, n_agents, n_actions, sampled_actions, num_simulations, *, os_rho, os_lambda, gamma,
                 pb_c_base=19652, pb_c_init=1.25, value_delta_min=0.01, seed=0, use_os_lambda=True,
                 root_search="sampled", gumbel_c_visit=50.0, gumbel_c_scale=0.1):
        p = _checks.tree_params(num_roots, n_agents, n_actions, sampled_actions, num_simulations, os_rho, os_lambda,
                                gamma, pb_c_base, pb_c_init, value_delta_min, seed)
        self.root_search, self.gumbel_c_visit, self.gumbel_c_scale = _checks.root_params(
            root_search, gumbel_c_visit, gumbel_c_scale)
        self._free_pools()  # only does something when __init__ is called again on a live object
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

        cdef Pools* P = &self.P
        P.B = self.num_roots
        P.N = self.n_agents
        P.A = self.n_actions
        P.sampled_actions = self.sampled_actions
        P.S = self.num_simulations
        P.one_minus_rho = 1.0 - self.os_rho
        P.gamma = self.gamma
        P.pb_c_base = self.pb_c_base
        P.pb_c_init = self.pb_c_init
        P.value_delta_min = self.value_delta_min
        P.use_os_lambda = self.use_os_lambda
        P.gumbel_root = self.root_search == "gumbel"
        P.gumbel_c_visit = self.gumbel_c_visit
        P.gumbel_c_scale = self.gumbel_c_scale
        cdef size_t size = self._layout(NULL)
        self.block = <char*>malloc(size)
        if self.block == NULL:
            raise MemoryError(f"SampledTrees: cannot allocate {size} bytes of pools")
        self._layout(self.block)
        cdef int b
        for b in range(P.B):
            P.arena[b] = NULL
        if P.use_os_lambda:
            for b in range(P.B):
                P.arena_cap[b] = <Py_ssize_t>ARENA_SLOTS_PER_NODE * (P.S + 1)
                P.arena[b] = <Slot*>malloc(<size_t>P.arena_cap[b] * sizeof(Slot))
                if P.arena[b] == NULL:
                    raise MemoryError("SampledTrees: cannot allocate the OS(lambda) arenas")
        P.lam_pow[0] = 1.0
        cdef int d
        for d in range(1, P.S + 1):
            P.lam_pow[d] = P.lam_pow[d - 1] * self.os_lambda
        for d in range(P.S + 1):
            P.sqrt_visits[d] = sqrt(d)
            P.c_term[d] = P.pb_c_init + log((d + P.pb_c_base + 1.0) / P.pb_c_base)
        cdef int m, j
        for m in range(1, P.sampled_actions + 1):
            for j, d in enumerate(_checks.halving_schedule(m, P.S)):
                P.halving[m * P.S + j] = d
        self._seed(p["seed"])
        self.sims_done = 0
        self.phase = 0

    cdef size_t _layout(self, char* base):
        """Carves every pool out of `base` (64-byte aligned); with base NULL only returns the size needed."""
        cdef Pools* P = &self.P
        cdef size_t off = 0
        cdef size_t B = P.B, nodes = B * (P.S + 1), edges = nodes * P.sampled_actions
        P.lam_pow = <double*>carve(base, &off, (P.S + 1) * sizeof(double))
        P.sqrt_visits = <double*>carve(base, &off, (P.S + 1) * sizeof(double))
        P.c_term = <double*>carve(base, &off, (P.S + 1) * sizeof(double))
        P.halving = <int*>carve(base, &off, <size_t>(P.sampled_actions + 1) * P.S * sizeof(int))
        P.parent = <int*>carve(base, &off, nodes * sizeof(int))
        P.visits = <int*>carve(base, &off, nodes * sizeof(int))
        P.num_children = <int*>carve(base, &off, nodes * sizeof(int))
        P.num_depths = <int*>carve(base, &off, nodes * sizeof(int))
        P.v_hat = <double*>carve(base, &off, nodes * sizeof(double))
        P.reward = <double*>carve(base, &off, nodes * sizeof(double))
        P.value = <double*>carve(base, &off, nodes * sizeof(double))
        P.adv = <double*>carve(base, &off, nodes * sizeof(double))
        P.return_sum = <double*>carve(base, &off, nodes * sizeof(double))
        P.edge_child = <int*>carve(base, &off, edges * sizeof(int))
        P.edge_prior = <double*>carve(base, &off, edges * sizeof(double))
        P.edge_action = <int16_t*>carve(base, &off, edges * P.N * sizeof(int16_t))
        P.region = <Py_ssize_t*>carve(base, &off, nodes * sizeof(Py_ssize_t))
        P.region_cap = <int*>carve(base, &off, nodes * sizeof(int))
        P.arena = <Slot**>carve(base, &off, B * sizeof(Slot*))
        P.arena_cap = <Py_ssize_t*>carve(base, &off, B * sizeof(Py_ssize_t))
        P.arena_top = <Py_ssize_t*>carve(base, &off, B * sizeof(Py_ssize_t))
        P.num_nodes = <int*>carve(base, &off, B * sizeof(int))
        P.adv_min = <double*>carve(base, &off, B * sizeof(double))
        P.adv_max = <double*>carve(base, &off, B * sizeof(double))
        P.argmin = <int*>carve(base, &off, B * sizeof(int))
        P.argmax = <int*>carve(base, &off, B * sizeof(int))
        P.pending_parent = <int*>carve(base, &off, B * sizeof(int))
        P.pending_edge = <int*>carve(base, &off, B * sizeof(int))
        P.rng_state = <uint64_t*>carve(base, &off, B * sizeof(uint64_t))
        P.rng_inc = <uint64_t*>carve(base, &off, B * sizeof(uint64_t))
        P.error = <int*>carve(base, &off, B * sizeof(int))
        P.error_agent = <int*>carve(base, &off, B * sizeof(int))
        P.cdf = <double*>carve(base, &off, B * P.N * P.A * sizeof(double))
        P.row = <int16_t*>carve(base, &off, B * P.N * sizeof(int16_t))
        P.root_log_prior = <double*>carve(base, &off, B * P.sampled_actions * sizeof(double))
        P.root_prior_ratio = <double*>carve(base, &off, B * P.sampled_actions * sizeof(double))
        P.root_score = <double*>carve(base, &off, B * P.sampled_actions * sizeof(double))
        P.completed_q = <double*>carve(base, &off, B * P.sampled_actions * sizeof(double))
        P.sigma = <double*>carve(base, &off, B * P.sampled_actions * sizeof(double))
        P.beam_prefix = <int16_t*>carve(base, &off, B * 2 * P.sampled_actions * P.N * sizeof(int16_t))
        P.beam_phi = <double*>carve(base, &off, B * 2 * P.sampled_actions * sizeof(double))
        P.beam_score = <double*>carve(base, &off, B * 2 * P.sampled_actions * sizeof(double))
        P.beam_parent = <int*>carve(base, &off, B * P.sampled_actions * sizeof(int))
        P.beam_action = <int16_t*>carve(base, &off, B * P.sampled_actions * sizeof(int16_t))
        P.perturbed = <double*>carve(base, &off, B * P.A * sizeof(double))
        P.beam_order = <int*>carve(base, &off, B * P.sampled_actions * sizeof(int))
        return off

    cdef void _free_pools(self):
        cdef int b
        if self.block == NULL:
            return
        for b in range(self.P.B):
            free(self.P.arena[b])
        free(self.block)
        self.block = NULL

    def __dealloc__(self):
        self._free_pools()

    cdef void _seed(self, uint64_t seed):
        cdef int b
        for b in range(self.P.B):
            pcg_seed(&self.P, b, seed, <uint64_t>b)

    cdef void _raise_on_error(self) except *:
        cdef int b = first_error(&self.P)
        if b >= 0 and self.P.error[b] == OUT_OF_MEMORY:
            raise MemoryError(f"SampledTrees: cannot grow the OS(lambda) arena of tree {b}")
        if b >= 0:
            raise ValueError(_ERROR_TEXT[self.P.error[b]].format(b=b, i=self.P.error_agent[b]))

    # ----------------------------------------------------------------------------------------------- lifecycle
    @one_thread_at_a_time
    def reset(self, seed=None):
        """Forgets the current search; with ``seed``, reseeds tree b's stream to PCG32(seed, b)."""
        if seed is not None:
            self._seed(_checks.seed_param(seed))
        self.sims_done = 0
        self.phase = 0

    @one_thread_at_a_time
    def prepare(self, values, probs, avail_actions, noise, noise_eps, gumbel_noise=False):
        """Expands the B roots (starting a new search): ``values`` [B] f32 root v_hat (the depth-0 term of the root
        value), ``probs`` [B, N, A] f32 policy, ``avail_actions`` [B, N, A] bool, ``noise`` [B, N, A] f32 or None (e.g.
        Dirichlet samples) mixed in with weight ``noise_eps``. The Gumbel root takes ``noise=None`` and
        ``gumbel_noise``: True perturbs its joint log-prior with Gumbel noise (self-play, reanalysis), False
        considers the K_s most probable joint actions (evaluation)."""
        cdef Pools* P = &self.P
        cdef bint use_gumbel_noise = _checks.gumbel_noise_param(gumbel_noise, P.gumbel_root, noise)
        shape = (P.B, P.N, P.A)
        values = checked("values", values, cnp.NPY_FLOAT32, np.float32, (P.B,))
        probs = checked("probs", probs, cnp.NPY_FLOAT32, np.float32, shape)
        avail_actions = checked("avail_actions", avail_actions, cnp.NPY_BOOL, np.bool_, shape)
        cdef double eps = _checks.noise_eps_param(noise_eps)
        cdef const float* noise_ptr = NULL
        if noise is not None:
            noise = checked("noise", noise, cnp.NPY_FLOAT32, np.float32, shape)
            noise_ptr = <const float*>cnp.PyArray_DATA(noise)
        cdef const float* values_ptr = <const float*>cnp.PyArray_DATA(values)
        cdef const float* probs_ptr = <const float*>cnp.PyArray_DATA(probs)
        cdef const uint8_t* avail_ptr = <const uint8_t*>cnp.PyArray_DATA(avail_actions)
        cdef int b, B = P.B
        with nogil:
            for b in range(B):
                P.error[b] = check_root_inputs(P, b, values_ptr, probs_ptr, avail_ptr, noise_ptr, eps)
            if first_error(P) < 0:  # every tree is checked before any tree changes
                for b in range(B):
                    prepare_tree(P, b, values_ptr[b], use_gumbel_noise)
        self._raise_on_error()
        self.sims_done = 0
        self.phase = 1

    # --------------------------------------------------------------------------------------------- simulation
    @one_thread_at_a_time
    def select(self):
        """Returns ``(parent_index [B] int32, actions [B, N] int32)``: the pool index of the node whose latent the
        network must extend in each tree, and the joint action to extend it with."""
        if self.phase == 0:
            raise ValueError("select() called before prepare()")
        if self.phase == 2:
            raise ValueError("select() called twice without expand() in between")
        if self.sims_done >= self.num_simulations:
            raise ValueError(f"select() called after all num_simulations={self.num_simulations} simulations")
        cdef Pools* P = &self.P
        cdef cnp.npy_intp dims[2]
        dims[0] = P.B
        dims[1] = P.N
        parents = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT32, 0)
        actions = cnp.PyArray_EMPTY(2, dims, cnp.NPY_INT32, 0)
        cdef int* parents_ptr = <int*>cnp.PyArray_DATA(parents)
        cdef int* actions_ptr = <int*>cnp.PyArray_DATA(actions)
        cdef int b, B = P.B, sims_done = self.sims_done
        with nogil:
            for b in range(B):
                select_tree(P, b, sims_done, parents_ptr, actions_ptr)
        self.phase = 2
        return parents, actions

    @one_thread_at_a_time
    def expand(self, values, rewards, probs):
        """Creates the leaf of the current simulation in every tree from the network output at the selected
        (parent, action): ``values`` [B] f32, ``rewards`` [B] f32, ``probs`` [B, N, A] f32 (the leaf's policy,
        sampled without an availability mask), then backs up OS(lambda) values and the min-max statistics."""
        if self.phase != 2:
            raise ValueError("expand() called without a preceding select()")
        cdef Pools* P = &self.P
        values = checked("values", values, cnp.NPY_FLOAT32, np.float32, (P.B,))
        rewards = checked("rewards", rewards, cnp.NPY_FLOAT32, np.float32, (P.B,))
        probs = checked("probs", probs, cnp.NPY_FLOAT32, np.float32, (P.B, P.N, P.A))
        cdef const float* values_ptr = <const float*>cnp.PyArray_DATA(values)
        cdef const float* rewards_ptr = <const float*>cnp.PyArray_DATA(rewards)
        cdef const float* probs_ptr = <const float*>cnp.PyArray_DATA(probs)
        cdef int b, B = P.B
        with nogil:
            for b in range(B):
                P.error[b] = check_expand_inputs(P, b, values_ptr, rewards_ptr, probs_ptr)
            if first_error(P) < 0:  # every tree is checked before any tree changes
                for b in range(B):
                    expand_tree(P, b, values_ptr[b], rewards_ptr[b])
        self._raise_on_error()
        self.sims_done += 1
        self.phase = 1

    # -------------------------------------------------------------------------------------------------- results
    cdef void _check_prepared(self, str what) except *:
        if self.phase == 0:
            raise ValueError(f"{what}() called before prepare()")

    @one_thread_at_a_time
    def root_values(self):
        """V^rho_lambda(root) per tree, [B] float32."""
        self._check_prepared("root_values")
        out = np.empty(self.P.B, dtype=np.float32)
        cdef float[::1] out_v = out
        cdef int b
        for b in range(self.P.B):
            out_v[b] = <float>self.P.value[<Py_ssize_t>b * (self.P.S + 1)]
        return out

    @one_thread_at_a_time
    def root_children(self):
        """Padded statistics of the sampled root children (K_s = sampled_actions slots, lexicographic order):
        ``actions`` [B, K_s, N] int32 (-1 pad), ``visits`` [B, K_s] int32, ``q_values`` [B, K_s] f32
        (r + gamma * V(child); 0 for unvisited children and padding, the completed Q v_mix for the Gumbel
        root's unvisited children), ``priors`` [B, K_s] f32, ``beta_hat`` [B, K_s] f32 (equal to ``priors`` with
        tau = 1, see ptree's class docstring; the Gumbel root: both the joint prior pi~(a)), ``num_children`` [B]
        int32, ``policy_target`` [B, K_s] f32 (visit shares n / sum n in float32; the Gumbel root: the improved
        policy softmax(log pi~ + sigma(completed Q))), ``selected`` [B] int32 (the most visited child, first on
        ties; the Gumbel root: Sequential Halving's winner)."""
        self._check_prepared("root_children")
        cdef Pools* P = &self.P
        cdef int B = P.B, sampled_actions = P.sampled_actions, N = P.N, b, c, i, child, m, total, most
        actions = np.full((B, sampled_actions, N), -1, dtype=np.int32)
        visits = np.zeros((B, sampled_actions), dtype=np.int32)
        q_values = np.zeros((B, sampled_actions), dtype=np.float32)
        priors = np.zeros((B, sampled_actions), dtype=np.float32)
        num_children = np.zeros(B, dtype=np.int32)
        policy_target = np.zeros((B, sampled_actions), dtype=np.float32)
        selected = np.zeros(B, dtype=np.int32)
        cdef int[:, :, ::1] actions_v = actions
        cdef int[:, ::1] visits_v = visits
        cdef float[:, ::1] q_v = q_values
        cdef float[:, ::1] priors_v = priors
        cdef int[::1] num_children_v = num_children
        cdef float[:, ::1] target_v = policy_target
        cdef int[::1] selected_v = selected
        cdef const double* sigma
        cdef const double* scores
        cdef const double* log_prior
        cdef double top, weight_sum, best
        cdef Py_ssize_t n0, e0
        for b in range(B):
            n0 = <Py_ssize_t>b * (P.S + 1)
            e0 = n0 * sampled_actions
            num_children_v[b] = P.num_children[n0]
            for c in range(P.num_children[n0]):
                for i in range(N):
                    actions_v[b, c, i] = P.edge_action[(e0 + c) * N + i]
                priors_v[b, c] = <float>P.edge_prior[e0 + c]
                child = P.edge_child[e0 + c]
                if child >= 0:
                    visits_v[b, c] = P.visits[n0 + child]
                    q_v[b, c] = <float>(P.reward[n0 + child] + P.gamma * P.value[n0 + child])
            if P.gumbel_root:
                m = root_sigma(P, b)
                sigma = P.sigma + <Py_ssize_t>b * sampled_actions
                scores = P.root_score + <Py_ssize_t>b * sampled_actions
                log_prior = P.root_log_prior + <Py_ssize_t>b * sampled_actions
                # the improved policy softmax(log pi~ + sigma), in double as ptree._improved_policy
                top = log_prior[0] + sigma[0]
                for c in range(m):
                    q_v[b, c] = <float>P.completed_q[<Py_ssize_t>b * sampled_actions + c]
                    if log_prior[c] + sigma[c] > top:
                        top = log_prior[c] + sigma[c]
                weight_sum = 0.0
                for c in range(m):
                    weight_sum += exp(log_prior[c] + sigma[c] - top)
                for c in range(m):
                    target_v[b, c] = <float>(exp(log_prior[c] + sigma[c] - top) / weight_sum)
                most = 0
                for c in range(m):
                    if visits_v[b, c] > most:
                        most = visits_v[b, c]
                best = -INFINITY
                for c in range(m):
                    if visits_v[b, c] == most and scores[c] + sigma[c] > best:
                        best = scores[c] + sigma[c]
                        selected_v[b] = c
            else:
                total = 0
                for c in range(sampled_actions):
                    total += visits_v[b, c]
                    if visits_v[b, c] > visits_v[b, selected_v[b]]:
                        selected_v[b] = c
                if total < 1:
                    total = 1
                for c in range(sampled_actions):
                    target_v[b, c] = (<float>visits_v[b, c]) / (<float>total)
        return dict(actions=actions, visits=visits, q_values=q_values, priors=priors, beta_hat=priors.copy(),
                    num_children=num_children, policy_target=policy_target, selected=selected)

    @one_thread_at_a_time
    def marginal_visits(self):
        """Root child visits summed onto each agent's action, [B, N, A] int32."""
        self._check_prepared("marginal_visits")
        cdef Pools* P = &self.P
        out = np.zeros((P.B, P.N, P.A), dtype=np.int32)
        cdef int[:, :, ::1] out_v = out
        cdef int b, c, i, child
        cdef Py_ssize_t n0, e0
        for b in range(P.B):
            n0 = <Py_ssize_t>b * (P.S + 1)
            e0 = n0 * P.sampled_actions
            for c in range(P.num_children[n0]):
                child = P.edge_child[e0 + c]
                if child >= 0:
                    for i in range(P.N):
                        out_v[b, i, P.edge_action[(e0 + c) * P.N + i]] += P.visits[n0 + child]
        return out

    @one_thread_at_a_time
    def node_values(self):
        """V of every node by pool index, [B, num_simulations + 1] float32, NaN for nodes not created yet."""
        self._check_prepared("node_values")
        cdef Pools* P = &self.P
        out = np.full((P.B, P.S + 1), np.nan, dtype=np.float32)
        cdef float[:, ::1] out_v = out
        cdef int b, node
        for b in range(P.B):
            for node in range(P.num_nodes[b]):
                out_v[b, node] = <float>P.value[<Py_ssize_t>b * (P.S + 1) + node]
        return out

    @one_thread_at_a_time
    def node_children(self, b, node):
        """The child edges of the node at pool index ``node`` of tree ``b``, in their (lexicographic) order:
        ``(children [C] int32, priors [C] float64)``, the pool index of each child (-1 while not expanded) and its
        prior beta_hat (the Gumbel root: pi~(a)), C = the node's number of children."""
        self._check_prepared("node_children")
        cdef Pools* P = &self.P
        b, node = _checks.node_params(b, node, P.B, [P.num_nodes[t] for t in range(P.B)])
        cdef Py_ssize_t n = <Py_ssize_t>b * (P.S + 1) + <int>node, e0 = n * P.sampled_actions
        cdef int c, m = P.num_children[n]
        children = np.empty(m, dtype=np.int32)
        priors = np.empty(m, dtype=np.float64)
        cdef int[::1] children_v = children
        cdef double[::1] priors_v = priors
        for c in range(m):
            children_v[c] = P.edge_child[e0 + c]
            priors_v[c] = P.edge_prior[e0 + c]
        return children, priors

    @one_thread_at_a_time
    def advantage_bounds(self):
        """The min-max normaliser per tree: ``(min [B], max [B])`` float32 over the current advantages of every
        expanded non-root node (NaN while a tree has none)."""
        self._check_prepared("advantage_bounds")
        lo = np.full(self.P.B, np.nan, dtype=np.float32)
        hi = np.full(self.P.B, np.nan, dtype=np.float32)
        cdef int b
        for b in range(self.P.B):
            if self.P.argmin[b] >= 0:
                lo[b] = self.P.adv_min[b]
                hi[b] = self.P.adv_max[b]
        return lo, hi
