# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The attention core of MAZero's communication transformer, forward and backward, for few agents (docs/mazero_perf.md).

For every sample b and head h, with q, k, v the [N, d] rows of agent i / j:
    weights[i, j] = softmax_j(scale q_i . k_j),  dropped = weights * mask,  attended_i = sum_j dropped[i, j] v_j.
At N = 3-10 agents each (b, h) is a few hundred multiply-adds; written as torch operations they become B x heads
tiny GEMMs or broadcast temporaries of [B, N, N, heads, d], which cost far more than the arithmetic. Here each
(b, h) is computed in one pass over its own rows, nothing materialised but the outputs. The torch formulation in
model.py (`_attention_torch`) is the reference the tests check this against, with autograd for the gradients.

Layouts (C-contiguous): qkv [B, N, 3, heads, d] (the in-projection's output), mask and weights [B, N, N, heads],
attended and its gradient [B, N, heads, d], the gradient of qkv [B, N, 3, heads, d].
"""
from libc.math cimport exp, expf

ctypedef fused real:
    float
    double


def attention_forward(real[:, :, :, :, ::1] qkv, real[:, :, :, ::1] mask, bint use_mask, double scale,
                      real[:, :, :, ::1] weights, real[:, :, :, ::1] attended):
    """Fills `weights` (the softmax, before dropout) and `attended`; `mask` is read only when `use_mask`."""
    cdef Py_ssize_t B = qkv.shape[0], N = qkv.shape[1], H = qkv.shape[3], D = qkv.shape[4]
    cdef Py_ssize_t b, h, i, j, e
    cdef real s, top, total, p
    cdef real *q
    cdef real *k
    cdef real *v
    cdef real *out
    cdef real *w
    cdef real *m
    with nogil:
        for b in range(B):
            for h in range(H):
                for i in range(N):
                    q = &qkv[b, i, 0, h, 0]
                    w = &weights[b, i, 0, h]  # weights[b, i, j, h] = w[j * H]
                    top = -1e30
                    for j in range(N):
                        k = &qkv[b, j, 1, h, 0]
                        s = 0
                        for e in range(D):
                            s = s + q[e] * k[e]
                        s = s * <real>scale
                        w[j * H] = s
                        if s > top:
                            top = s
                    total = 0
                    for j in range(N):
                        if real is float:  # single-precision exp: the double one costs as much as the rest
                            p = expf(w[j * H] - top)
                        else:
                            p = exp(w[j * H] - top)
                        w[j * H] = p
                        total = total + p
                    out = &attended[b, i, h, 0]
                    for e in range(D):
                        out[e] = 0
                    m = &mask[b, i, 0, h]
                    for j in range(N):
                        p = w[j * H] / total
                        w[j * H] = p
                        if use_mask:
                            p = p * m[j * H]
                        v = &qkv[b, j, 2, h, 0]
                        for e in range(D):
                            out[e] = out[e] + p * v[e]


def attention_backward(real[:, :, :, ::1] grad, real[:, :, :, :, ::1] qkv, real[:, :, :, ::1] weights,
                       real[:, :, :, ::1] mask, bint use_mask, double scale, real[:, :, :, :, ::1] grad_qkv):
    """Fills `grad_qkv` from the gradient of `attended`, with `weights` from attention_forward."""
    cdef Py_ssize_t B = qkv.shape[0], N = qkv.shape[1], H = qkv.shape[3], D = qkv.shape[4]
    cdef Py_ssize_t b, h, i, j, e
    cdef real g_w, dot, dropped, g_s
    cdef real row[64]  # the gradient of one query's softmax output, [N]; model.py sends N <= 64 here
    cdef real *g
    cdef real *q
    cdef real *k
    cdef real *v
    cdef real *w
    cdef real *m
    cdef real *g_q
    cdef real *g_k
    cdef real *g_v
    with nogil:
        for b in range(B):
            for h in range(H):
                for j in range(N):
                    for e in range(D):
                        grad_qkv[b, j, 0, h, e] = 0
                        grad_qkv[b, j, 1, h, e] = 0
                        grad_qkv[b, j, 2, h, e] = 0
                for i in range(N):
                    g = &grad[b, i, h, 0]
                    w = &weights[b, i, 0, h]
                    m = &mask[b, i, 0, h]
                    dot = 0
                    for j in range(N):
                        v = &qkv[b, j, 2, h, 0]
                        g_v = &grad_qkv[b, j, 2, h, 0]
                        dropped = w[j * H] * m[j * H] if use_mask else w[j * H]
                        g_w = 0
                        for e in range(D):
                            g_w = g_w + g[e] * v[e]
                        for e in range(D):
                            g_v[e] = g_v[e] + dropped * g[e]
                        if use_mask:
                            g_w = g_w * m[j * H]
                        row[j] = g_w
                        dot = dot + g_w * w[j * H]
                    q = &qkv[b, i, 0, h, 0]
                    g_q = &grad_qkv[b, i, 0, h, 0]
                    for j in range(N):
                        g_s = w[j * H] * (row[j] - dot) * <real>scale
                        k = &qkv[b, j, 1, h, 0]
                        g_k = &grad_qkv[b, j, 1, h, 0]
                        for e in range(D):
                            g_q[e] = g_q[e] + g_s * k[e]
                        for e in range(D):
                            g_k[e] = g_k[e] + g_s * q[e]


def dropout_masks(real[::1] out, unsigned long long seed, double p):
    """Fills `out` with dropout keep masks: 0 with probability p, else 1 / (1 - p).

    Element n compares the 32-bit uniform number n of a SplitMix64 stream (Steele, Lea and Flood, "Fast
    splittable pseudorandom number generators", OOPSLA 2014: output n = mix(seed + (n + 1) * gamma), two 32-bit
    halves per output) with p * 2^32. Counter-based, so every element is independent of the order they are filled
    in; the caller draws `seed` from torch's generator, which keeps runs reproducible from torch.manual_seed."""
    cdef Py_ssize_t n, size = out.shape[0]
    cdef unsigned long long z, state = seed
    cdef unsigned long long threshold = <unsigned long long>(p * 4294967296.0)
    cdef real keep = <real>(1.0 / (1.0 - p))
    cdef real *values = &out[0]
    with nogil:
        for n in range(size // 2):
            state = state + 0x9E3779B97F4A7C15ULL
            z = (state ^ (state >> 30)) * 0xBF58476D1CE4E5B9ULL
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
            z = z ^ (z >> 31)
            values[2 * n] = keep * ((z & 0xFFFFFFFFULL) >= threshold)
            values[2 * n + 1] = keep * ((z >> 32) >= threshold)
        if size % 2:
            state = state + 0x9E3779B97F4A7C15ULL
            z = (state ^ (state >> 30)) * 0xBF58476D1CE4E5B9ULL
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
            z = z ^ (z >> 31)
            values[size - 1] = keep * ((z & 0xFFFFFFFFULL) >= threshold)
