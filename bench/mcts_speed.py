"""Tree-only speed of mcts.ctree vs mcts.ptree: simulations per second spent inside select() + expand().

Both trees run the same searches on the same inputs: a random fake network (softmax of Gaussian logits, Gaussian
values and rewards, random availability masks, Dirichlet root noise) whose outputs are drawn before timing, so only the
tree calls, marshalling included, are on the clock. One tree-simulation = one select + expand in one of the B trees.

    nice -n 10 python bench/mcts_speed.py            # the table of issue 4
    nice -n 10 python bench/mcts_speed.py --quick    # shorter measurements
    nice -n 10 python bench/mcts_speed.py --roots    # ctree with the sampled root vs the Gumbel root (issue 28)

With --roots both roots run in ctree on the same shapes and network outputs, prepare() on the clock too (the Gumbel
root's beam search over the agents runs there); the Gumbel root gets no Dirichlet noise, Gumbel noise instead.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle BLAS threads must not compete with the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import numpy as np  # noqa: E402

from mcts import ctree, ptree  # noqa: E402

# (B, N, A, K_s, S), K_s = sampled_actions
CONFIGS = [
    (32, 5, 14, 10, 100),
    (256, 5, 14, 10, 50),
    (32, 8, 14, 10, 100),
    (32, 2, 70, 10, 100),
    (32, 27, 36, 10, 50),
]
TREE_KWARGS = dict(os_rho=0.25, os_lambda=0.8, gamma=0.99)  # the official SMAC script's OS(lambda) and gamma


def fake_network_outputs(rng, B, N, A, S):
    def policy():
        logits = rng.normal(scale=1.5, size=(B, N, A))
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)

    avail_actions = rng.random((B, N, A)) < 0.7
    avail_actions[:, :, 0] = True
    root = (rng.normal(size=B).astype(np.float32), policy(), avail_actions,
            rng.dirichlet([0.3] * A, size=(B, N)).astype(np.float32), 0.25)
    steps = [(rng.normal(size=B).astype(np.float32), rng.normal(size=B).astype(np.float32), policy())
             for _ in range(S)]
    return root, steps


def timed_search(trees, root, steps, root_search=None):
    """Seconds spent inside select + expand over one search; with root_search ("sampled" or "gumbel", the Gumbel
    root with Gumbel noise instead of the Dirichlet noise) prepare too."""
    start = time.perf_counter()
    if root_search == "gumbel":
        trees.prepare(*root[:3], None, 0.0, gumbel_noise=True)
    else:
        trees.prepare(*root)
    elapsed = time.perf_counter() - start if root_search else 0.0
    for values, rewards, probs in steps:
        start = time.perf_counter()
        trees.select()
        trees.expand(values, rewards, probs)
        elapsed += time.perf_counter() - start
    return elapsed


def sims_per_second(module, shape, inputs, min_time, max_searches, root_search=None):
    """Median tree-sims/s of `module`'s trees of `shape` (B, N, A, K_s, S) over searches of `inputs` (see
    timed_search for root_search)."""
    B, S = shape[0], shape[4]
    trees = module.SampledTrees(*shape, seed=0, root_search=root_search or "sampled", **TREE_KWARGS)
    timed_search(trees, *inputs[0], root_search)  # warm-up: first touch of the preallocated pools
    rates, total = [], 0.0
    while total < min_time and len(rates) < max_searches:
        elapsed = timed_search(trees, *inputs[len(rates) % len(inputs)], root_search)
        rates.append(B * S / elapsed)
        total += elapsed
    return float(np.median(rates))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 5x shorter measurements")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--roots", action="store_true", help="ctree: sampled root vs Gumbel root (issue 28)")
    args = parser.parse_args()
    c_time, p_time = (0.3, 0.3) if args.quick else (1.5, 1.0)
    rng = np.random.default_rng(args.seed)
    if args.roots:
        compare_roots(rng, c_time)
        return

    print("tree-only simulations/s (select + expand, marshalling included; median over searches)")
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    header = f"{'B':>4} {'N':>3} {'A':>3} {'K_s':>3} {'S':>4} | {'ctree sims/s':>13} {'ptree sims/s':>13} " \
             f"{'ctree/ptree':>11}"
    print(header)
    print("-" * len(header))
    results = {}
    for shape in CONFIGS:
        B, N, A, sampled_actions, S = shape
        inputs = [fake_network_outputs(rng, B, N, A, S) for _ in range(3)]
        c_rate = sims_per_second(ctree, shape, inputs, c_time, 200)
        p_rate = sims_per_second(ptree, shape, inputs, p_time, 3)
        results[shape] = (c_rate, p_rate)
        print(f"{B:>4} {N:>3} {A:>3} {sampled_actions:>3} {S:>4} | {c_rate:>13,.0f} {p_rate:>13,.0f} "
              f"{c_rate / p_rate:>10.1f}x", flush=True)

    main_rate, main_ptree = results[(32, 5, 14, 10, 100)]
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    print(f"target (32,5,14,10,100): >= 360,000 sims/s and >= 30x ptree -> "
          f"{main_rate:,.0f} sims/s, {main_rate / main_ptree:.1f}x")


def compare_roots(rng, min_time):
    print("ctree simulations/s with prepare + select + expand on the clock, sampled root vs Gumbel root "
          "(median over searches)")
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    header = f"{'B':>4} {'N':>3} {'A':>3} {'K_s':>3} {'S':>4} | {'sampled sims/s':>14} {'gumbel sims/s':>14} " \
             f"{'gumbel/sampled':>14}"
    print(header)
    print("-" * len(header))
    for shape in CONFIGS:
        B, N, A, sampled_actions, S = shape
        inputs = [fake_network_outputs(rng, B, N, A, S) for _ in range(3)]
        sampled = sims_per_second(ctree, shape, inputs, min_time, 200, root_search="sampled")
        gumbel = sims_per_second(ctree, shape, inputs, min_time, 200, root_search="gumbel")
        print(f"{B:>4} {N:>3} {A:>3} {sampled_actions:>3} {S:>4} | {sampled:>14,.0f} {gumbel:>14,.0f} "
              f"{gumbel / sampled:>13.2f}x", flush=True)
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
