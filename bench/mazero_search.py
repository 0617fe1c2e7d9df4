"""Search cost of MAZero's batched MCTS: simulations per second and where the time goes.

Runs the real driver (`mcts.search.MCTSSearch.run`) with the real model (`MAZeroModel`, official sizes read from
src/config/algs/mazero.yaml) on 3m-, 8m- and 27m_vs_30m-sized problems (SMAC agent, action and observation counts)
and splits each search, from the outside, into
  network  time inside the search's two traced network calls (mcts.search.SearchNetwork: initial_inference and
           recurrent_inference, with the value / reward scalars and the softmax folded into the trace),
  tree     time inside the tree object's API: prepare + select + expand (the "tree" of issue 8); the tree's
           construction and root read-outs are a column of their own ("tree other"),
  glue     everything else inside run(): gathers and writes of the latent pool, index conversions, numpy <->
           torch hand-overs, the Python loop itself.
The network calls (through `MCTSSearch.network_for`) and the tree's methods are wrapped with timers; the driver's
code is neither touched nor copied. All
intervals are CPU time of the searching thread (the machine is shared); uninstrumented searches alternate with the
instrumented ones, and the timers' own cost (measured on a no-op) is subtracted.

For the B = 32 cases it then times the communication transformer as an nn.TransformerEncoder module against its
fused kernels.

    nice -n 10 python bench/mazero_search.py                  # full table: S = 100, K_s = 10 (20-30 min when loaded)
    python bench/mazero_search.py --quick                      # smoke mode: under a minute
    nice -n 10 python bench/mazero_search.py --compare-ptree   # adds 3m at B = 8 with ctree and the pure-Python ptree
"""
import argparse
import copy
import functools
import os
import statistics
import subprocess
import sys
import time
import types
from collections import defaultdict

# One compute thread everywhere: torch intra-op, OpenMP, BLAS (set before torch and numpy load their runtimes).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from config_loader import config_args  # noqa: E402
from mcts import ctree, ptree  # noqa: E402
from mcts.search import MCTSSearch, SearchConfig  # noqa: E402
from modules.mazero.model import MAZeroModel, ModelConfig  # noqa: E402

# map -> (n_agents, n_actions, SMAC observation size). The model input adds the one-hot last action and agent id,
# as the mazero controller builds it (obs_last_action, obs_agent_id of the config).
MAPS = {"3m": (3, 9, 30), "8m": (8, 14, 80), "27m_vs_30m": (27, 36, 285)}
BATCHES = (8, 32, 256)
SEARCH_CALLS = ("prepare", "select", "expand")  # the tree share of the goal
READOUT_CALLS = ("root_values", "root_children")


# --- set-up ----------------------------------------------------------------------------------------------------
def alg_args(config="mazero", **updates):
    """src/config/algs/<config>.yaml merged as main.py merges it (default < envs/smax.yaml < alg), with `updates`."""
    return config_args(config, "smax", **updates)


def official_args(n_agents, n_actions, simulations, sampled_actions):
    return alg_args(n_agents=n_agents, n_actions=n_actions, num_simulations=simulations,
                    sampled_actions=sampled_actions)


def build_model(args, obs_dim, seed):
    """Official-size model in eval mode, and its per-agent input size.

    The zero-initialised output layers of the reward, value and policy heads get random weights (logit spread about
    1), so priors and values differ between nodes as after some training; with the zero init every prior is uniform,
    every value 0, and the tree would meet only exact ties. The network's cost is the same either way.
    """
    torch.manual_seed(seed)
    input_dim = obs_dim + (args.n_actions if args.obs_last_action else 0) \
        + (args.n_agents if args.obs_agent_id else 0)
    model = MAZeroModel(input_dim, ModelConfig.from_config(args)).eval()
    for head in (model.reward_head, model.value_head, model.policy_head):
        out = head.net[-1]
        torch.nn.init.normal_(out.weight, std=out.in_features ** -0.5)
    return model, input_dim


def root_inputs(rng, B, N, A, input_dim):
    """Random agent inputs and avail_actions masks (each action available with probability 0.7, action 0 always)."""
    inputs = torch.from_numpy(rng.normal(size=(B, N, input_dim)).astype(np.float32))
    avail_actions = rng.random((B, N, A)) < 0.7
    avail_actions[:, :, 0] = True
    return inputs, torch.from_numpy(avail_actions)


# --- instrumentation -------------------------------------------------------------------------------------------
# The machine is shared and oversubscribed, so wall-clock intervals include time the process spent preempted. Every
# interval is therefore measured in this thread's CPU time (torch runs its ops in the calling thread with 1 thread);
# sims/s are also given in wall-clock.
cpu_time = time.thread_time


class Clock:
    """Accumulates CPU seconds and calls per key; `wrap` returns a timed forwarder of a callable."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.last = {}  # key -> (args, result) of the latest call, for the glue profile

    def wrap(self, fn, key, keep=False):
        seconds, calls, last = self.seconds, self.calls, self.last

        def timed(*args, **kwargs):
            start = cpu_time()
            result = fn(*args, **kwargs)
            seconds[key] += cpu_time() - start
            calls[key] += 1
            if keep:
                last[key] = (args, result)
            return result
        return timed


def timer_bias(reps=20000):
    """CPU seconds a wrapper adds per call inside its timed interval and outside it, measured on a no-op."""
    clock = Clock()
    noop = clock.wrap(lambda: None, "noop")
    bare = lambda: None  # noqa: E731
    start = cpu_time()
    for _ in range(reps):
        bare()
    baseline = cpu_time() - start
    start = cpu_time()
    for _ in range(reps):
        noop()
    wrapped = cpu_time() - start
    inside = clock.seconds["noop"] / reps
    return inside, max(0.0, (wrapped - baseline) / reps - inside)


class TimedTrees:
    """Forwards the tree API to a real tree object and times every call (construction included). The constructor's
    and `prepare`'s arguments (tree seed, root noise) are kept so the glue profile can replay the same search."""

    def __init__(self, tree_cls, clock, *args, **kwargs):
        start = cpu_time()
        trees = tree_cls(*args, **kwargs)
        clock.seconds["build"] += cpu_time() - start
        clock.calls["build"] += 1
        clock.last["build"] = (args, kwargs)
        for name in SEARCH_CALLS + READOUT_CALLS:
            setattr(self, name, clock.wrap(getattr(trees, name), name, keep=name == "prepare"))


class TimedSearch(MCTSSearch):
    """MCTSSearch whose traced network calls (`root`: initial_inference, `step`: recurrent_inference, each with the
    value / reward scalars and softmax folded in) feed `clock`."""

    def __init__(self, clock, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def network_for(self, model, inputs):
        network = super().network_for(model, inputs)
        return types.SimpleNamespace(root=self.clock.wrap(network.root, "initial"),
                                     step=self.clock.wrap(network.step, "recurrent"))


def instrumented(model, tree_cls, config, clock, seed):
    """(search, model) pair whose network and tree calls feed `clock`; the model is a copy."""
    search = TimedSearch(clock, config, seed, tree_cls=functools.partial(TimedTrees, tree_cls, clock))
    return search, copy.deepcopy(model)


# --- measurement -----------------------------------------------------------------------------------------------
def measure(model, tree_cls, config, inputs, avail_actions, min_time, min_searches, max_searches, bias, seed=0):
    """Medians over alternating (plain, instrumented) searches of one case (`config`: the SearchConfig).

    Each instrumented search's network, tree and total CPU times are corrected by the wrappers' own cost (`bias`,
    from `timer_bias`): per wrapped call, the part inside the timed interval leaves the network or tree time and
    the part outside leaves the glue. Returns per-search medians, the shares, the plain searches' CPU and wall
    times, and the clock holding the last calls' results for the glue profile.
    """
    inside, outside = bias
    clock = Clock()
    timed_search, timed_model = instrumented(model, tree_cls, config, clock, seed)
    plain_search = MCTSSearch(config, seed, tree_cls=tree_cls)
    plain_search.run(model, inputs, avail_actions, add_noise=True)  # warm-up: allocator, pools, lazy imports
    timed_search.run(timed_model, inputs, avail_actions, add_noise=True)
    rows, plain, plain_wall = [], [], []
    while len(rows) < min_searches or (sum(r["total"] for r in rows) < min_time and len(rows) < max_searches):
        wall, start = time.perf_counter(), cpu_time()
        plain_search.run(model, inputs, avail_actions, add_noise=True)
        plain.append(cpu_time() - start)
        plain_wall.append(time.perf_counter() - wall)
        clock.seconds.clear()
        clock.calls.clear()
        start = cpu_time()
        result = timed_search.run(timed_model, inputs, avail_actions, add_noise=True)
        total = cpu_time() - start
        row = {k: clock.seconds[k] - inside * clock.calls[k] for k in list(clock.seconds)}
        calls = sum(clock.calls.values())
        row["total"] = total - (inside + outside) * calls
        row["network"] = row["initial"] + row["recurrent"]
        row["tree"] = sum(row[k] for k in SEARCH_CALLS)
        row["tree_other"] = row["build"] + sum(row[k] for k in READOUT_CALLS)
        row["glue"] = row["total"] - row["network"] - row["tree"] - row["tree_other"]
        rows.append(row)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["share"] = {k: statistics.median(r[k] / r["total"] for r in rows)
                    for k in ("network", "tree", "tree_other", "glue")}
    med["share"]["tree+glue"] = statistics.median((r["tree"] + r["tree_other"] + r["glue"]) / r["total"] for r in rows)
    med["plain"] = statistics.median(plain)
    med["plain_wall"] = statistics.median(plain_wall)
    med["searches"] = len(rows)
    med["clock"], med["result"] = clock, result
    return med


# --- network call overhead ------------------------------------------------------------------------------------------
def time_op(fn, min_time):
    """Median CPU seconds of one call of fn over 5 rounds of together about min_time."""
    fn()
    start, reps = cpu_time(), 0
    while cpu_time() - start < min_time / 5:
        fn()
        reps += 1
    rounds = []
    for _ in range(5):
        start = cpu_time()
        for _ in range(reps):
            fn()
        rounds.append((cpu_time() - start) / reps)
    return statistics.median(rounds)


@torch.no_grad()
def encoder_overhead(model, args, B, rng):
    """CPU µs of one recurrent_inference, of its communication encoder module, and of the same encoder as bare calls
    of the fused kernel PyTorch's TransformerEncoderLayer dispatches to in eval mode (torch._transformer_encoder_
    layer_fwd, a private op: what the module costs without its per-call Python fast-path checks). None when the
    model has no communication transformer."""
    if not getattr(model, "use_communication", False):
        return None
    N, A, H = args.n_agents, args.n_actions, model.latent_dim
    latent = torch.from_numpy(rng.normal(size=(B, N, H)).astype(np.float32))
    actions = torch.from_numpy(rng.integers(0, A, size=(B, N)))
    encoder = model.communication.encoder

    def fused():
        x = latent
        for layer in encoder.layers:
            attn = layer.self_attn
            x = torch._transformer_encoder_layer_fwd(
                x, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight,
                attn.out_proj.bias, layer.activation_relu_or_gelu == 2, layer.norm_first, layer.norm1.eps,
                layer.norm1.weight, layer.norm1.bias, layer.norm2.weight, layer.norm2.bias, layer.linear1.weight,
                layer.linear1.bias, layer.linear2.weight, layer.linear2.bias, None, None)
        return x
    if not torch.equal(fused(), encoder(latent)):
        return None  # the module did not take the fused path: the comparison would not be like for like
    return (time_op(lambda: model.recurrent_inference(latent, actions), 0.5) * 1e6,
            time_op(lambda: encoder(latent), 0.3) * 1e6, time_op(fused, 0.3) * 1e6)


# --- output ------------------------------------------------------------------------------------------------------
HEADER = ("| map | N | A | B | tree | searches | search CPU ms | sims/CPU-s | sims/s wall | net-only sims/CPU-s "
          "| network | tree (sel+exp+prep) | tree other | glue | tree+glue | tree µs/sim | glue µs/sim "
          "| corrected / plain |")


def table_row(name, N, A, B, tree_name, med, S):
    sh = med["share"]
    per_sim = 1e6 / (B * S)
    return (f"| {name} | {N} | {A} | {B} | {tree_name} | {med['searches']} | {med['total'] * 1e3:.1f} "
            f"| {B * S / med['total']:,.0f} | {B * S / med['plain_wall']:,.0f} | {B * S / med['network']:,.0f} "
            f"| {sh['network']:.1%} | {sh['tree']:.1%} | {sh['tree_other']:.1%} | {sh['glue']:.1%} "
            f"| {sh['tree+glue']:.1%} | {(med['tree'] + med['tree_other']) * per_sim:.2f} "
            f"| {med['glue'] * per_sim:.2f} | {med['total'] / med['plain']:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 3m and 8m, B in {8, 32}, S = 20, one timed search per case")
    parser.add_argument("--simulations", type=int, default=None, help="S (default 100, official; 20 with --quick)")
    parser.add_argument("--sampled-actions", type=int, default=10, help="K_s (default 10, official)")
    parser.add_argument("--maps", nargs="+", choices=sorted(MAPS), default=None)
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--compare-ptree", action="store_true",
                        help="also run 3m at B = 8 with the pure-Python tree (mcts.ptree) next to the compiled one")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds of instrumented searches per case (default 3; 0 with --quick)")
    args_cli = parser.parse_args()

    torch.set_num_threads(1)
    if ctree is None:
        sys.exit("mcts.ctree is not built: run `python setup.py build_ext --inplace` in the repository root")
    S = args_cli.simulations or (20 if args_cli.quick else 100)
    sampled_actions = args_cli.sampled_actions
    maps = args_cli.maps or (["3m", "8m"] if args_cli.quick else list(MAPS))
    batches = args_cli.batches or ([8, 32] if args_cli.quick else list(BATCHES))
    profiled = [32]  # batch size whose transformer call overhead is measured
    min_time = args_cli.min_time if args_cli.min_time is not None else (0.0 if args_cli.quick else 3.0)
    min_searches, max_searches = (1, 1) if args_cli.quick else (3, 9)

    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"MAZero search cost: S = {S}, K_s = {sampled_actions}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} thread, commit {commit}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    bias = timer_bias()
    print(f"Medians over alternating plain/instrumented searches, in CPU time of the searching thread; timer cost per "
          f"wrapped call {bias[0] * 1e6:.2f} µs inside + {bias[1] * 1e6:.2f} µs outside the interval, subtracted.")
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    profiles = []
    cases = [(name, B, ctree.SampledTrees, "ctree") for name in maps for B in batches]
    if args_cli.compare_ptree:
        cases += [("3m", 8, ctree.SampledTrees, "ctree"), ("3m", 8, ptree.SampledTrees, "ptree")]
    models, compared = {}, {}
    for name, B, tree_cls, tree_name in cases:
        N, A, obs = MAPS[name]
        args = official_args(N, A, S, sampled_actions)
        if name not in models:
            models[name] = build_model(args, obs, seed=0)
        model, input_dim = models[name]
        inputs, avail_actions = root_inputs(np.random.default_rng(B), B, N, A, input_dim)
        med = measure(model, tree_cls, SearchConfig.from_config(args), inputs, avail_actions, min_time, min_searches,
                      max_searches, bias)
        print(table_row(name, N, A, B, tree_name, med, S), flush=True)
        if args_cli.compare_ptree and name == "3m" and B == 8:
            compared[tree_name] = med
        if B in profiled and tree_name == "ctree" and (name, B) not in [(p[0], p[1]) for p in profiles]:
            profiles.append((name, B, encoder_overhead(model, args, B, np.random.default_rng(1))))
    if len(compared) == 2:
        c, p = compared["ctree"], compared["ptree"]
        print(f"\nptree vs ctree, 3m, B = 8: tree (sel+exp+prep) {p['tree'] / c['tree']:.1f}x the CPU time, "
              f"search {p['total'] / c['total']:.2f}x, sims/CPU-s {c['total'] / p['total']:.2f}x")
    print_overheads(profiles)


def print_overheads(profiles):
    """The table of the communication transformer's call overhead, from (map, B, encoder_overhead) triples."""
    overheads = [(name, B, o) for name, B, o in profiles if o is not None]
    if overheads:
        print("\nNetwork call overhead (CPU µs per call): the communication transformer as nn.TransformerEncoder vs "
              "its fused kernels called directly")
        print("| map | B | recurrent_inference | encoder module | encoder fused kernels | module overhead "
              "| overhead / recurrent |")
        print("|---|---|---|---|---|---|---|")
        for name, B, (recurrent, module, fused) in overheads:
            print(f"| {name} | {B} | {recurrent:.0f} | {module:.0f} | {fused:.0f} | {module - fused:.0f} "
                  f"| {(module - fused) / recurrent:.1%} |")


if __name__ == "__main__":
    main()
