"""MAZero's model before and after the speed work of issue 27, in one run: one learner update and one search step.

The "before" model is src/modules/mazero/model.py as it was at a commit (default 4409fba, the issue's baseline),
read with `git show` and loaded as a module of its own; the "after" model is the working tree's. Both get the same
weights, and each case calls them in turn, the order rotating each round, one torch thread, CPU time of this thread,
since the machine is shared: the medians and the median of the per-round ratios are what to read. The update cases
also time the after model with its compiled attention_kernel switched off (autograd through the torch formulation of
the layer, as where the extension is not built): the one-node layer and the kernel's own share of the speed-up.

  update        one MAZeroLearner.update at the mazero_cpu budget (K = 5, no reanalysis: value targets, unroll,
                backward, Adam) with `batch_transitions` set, on one batch of bench/mazero_update_cost.py's replay
                and its stored policy targets; the learner is the working tree's for both models;
  search step   the traced SearchNetwork.step (recurrent_inference with the scalars and the softmax, as the search
                runs it) on 16 random roots, under no_grad.

FLOPs are the before model's, counted by torch.utils.flop_counter.FlopCounterMode with the transformer fast path
off (the two models do the same arithmetic; the counter sees only matmuls, and the after model's attention has
none). Share of peak = FLOPs / median CPU time / peak, with peak = the best torch.mm on [4608,128]x[128,128] and
[1024,1024]x[1024,1024], timed at the start of the run and again at its end (the higher one is used).

    nice -n 10 python bench/mazero_update_speed.py                    # 3m and 2s3z, 64 and 256 transitions, 16 roots
    python bench/mazero_update_speed.py --maps 3m --batches 64 --pairs 10
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import types

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import torch  # noqa: E402

from learners.mazero_learner import MAZeroLearner, reanalyse_policy_targets  # noqa: E402
from mazero_flops import count_flops, peak_flops  # noqa: E402
from mazero_update_cost import NullLogger, build_args, filled_replay  # noqa: E402
from mcts.search import SearchNetwork, trace_search_network  # noqa: E402
import modules.mazero.model as model_module  # noqa: E402
from modules.mazero.model import MAZeroModel  # noqa: E402
from run.mazero_config import build_mazero_config  # noqa: E402

# map -> (n_agents, n_actions, SMAC observation size); the model input adds the one-hot last action and agent id.
MAPS = {"3m": (3, 9, 30), "2s3z": (5, 11, 80), "8m": (8, 14, 80)}
BASELINE = "4409fba"
MODEL_FILE = "src/modules/mazero/model.py"


def model_at(commit):
    """MAZeroModel as defined in MODEL_FILE at `commit` (a module named after the commit)."""
    source = subprocess.run(["git", "-C", ROOT, "show", f"{commit}:{MODEL_FILE}"], capture_output=True, text=True,
                            check=True).stdout
    spec = importlib.util.spec_from_loader(f"mazero_model_{commit}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{commit}:{MODEL_FILE}", "exec"), module.__dict__)
    return module.MAZeroModel


def alternating_medians(calls, rounds):
    """CPU time of each of `calls`, called in turn (the order rotating each round) after one warm-up call each:
    (median seconds of each, median over the rounds of calls[0]'s time / each one's)."""
    for fn in calls:
        fn()
    times = [[] for _ in calls]
    for r in range(rounds):
        for index in [(r + i) % len(calls) for i in range(len(calls))]:
            start = time.thread_time()
            calls[index]()
            times[index].append(time.thread_time() - start)
    medians = [statistics.median(t) for t in times]
    ratios = [statistics.median(b / a for b, a in zip(times[0], t)) for t in times]
    return medians, ratios


def without_kernel(fn):
    """`fn` with the model's attention_kernel switched off: autograd through the torch formulation."""
    def call():
        kernel, model_module.attention_kernel = model_module.attention_kernel, None
        try:
            fn()
        finally:
            model_module.attention_kernel = kernel
    return call


def input_dim(args, obs_dim):
    return obs_dim + (args.n_actions if args.obs_last_action else 0) + (args.n_agents if args.obs_agent_id else 0)


def update_calls(map_name, batch_transitions, before_class):
    """(before, after) callables of one MAZeroLearner.update each on the same batch, the two learners starting from
    the same weights, and the update's FLOPs."""
    n_agents, n_actions, obs_dim = MAPS[map_name]
    args = build_args("mazero_cpu", n_agents, n_actions, [f"batch_transitions={batch_transitions}"])
    config = build_mazero_config(args)
    dim = input_dim(args, obs_dim)
    torch.manual_seed(0)
    replay = filled_replay(config, dim, max(1000, 4 * batch_transitions))
    after_model = MAZeroModel(dim, config.model).eval()
    before_model = before_class(dim, args).eval()  # the model at the before commit reads the config namespace
    before_model.load_state_dict(after_model.state_dict())
    batch = replay.sample_batch(config.learner.per_beta_start)
    # reanalyse_ratio 0: the stored statistics
    policy = reanalyse_policy_targets(batch, after_model, None, config.reanalysis)
    calls = []
    for model in (before_model, after_model):
        learner = MAZeroLearner(types.SimpleNamespace(agent=model), NullLogger(), config.learner)
        calls.append(lambda learner=learner: learner.update(batch, policy, t_env=0))
    return calls[0], calls[1], count_flops(calls[0])


def search_step_calls(map_name, roots, before_class):
    """(before, after) callables of the traced search step on `roots` roots, and its FLOPs."""
    n_agents, n_actions, obs_dim = MAPS[map_name]
    args = build_args("mazero_cpu", n_agents, n_actions, [])
    dim = input_dim(args, obs_dim)
    torch.manual_seed(roots)
    after_model = MAZeroModel(dim, build_mazero_config(args).model).eval()
    before_model = before_class(dim, args).eval()  # the model at the before commit reads the config namespace
    before_model.load_state_dict(after_model.state_dict())
    inputs = torch.randn(roots, n_agents, dim)
    actions = torch.randint(0, n_actions, (roots, n_agents))
    calls = []
    for model in (before_model, after_model):
        network = SearchNetwork(model, model.value_support_size, model.reward_support_size)
        with torch.no_grad():
            latent = model.represent(inputs)
            traced = trace_search_network(network, inputs, latent, actions)

        def step(traced=traced, latent=latent):
            with torch.no_grad():
                traced.step(latent, actions)
        calls.append(step)
    flops = count_flops(lambda: SearchNetwork(before_model, args.value_support_size,
                                              args.reward_support_size).step(latent, actions))
    return calls[0], calls[1], flops


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BASELINE, help="commit of the before model")
    parser.add_argument("--maps", nargs="+", choices=list(MAPS), default=["3m", "2s3z"])
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 256],
                        help="update batch sizes (batch_transitions)")
    parser.add_argument("--roots", type=int, default=16, help="roots of the search step (3m)")
    parser.add_argument("--pairs", type=int, default=20,
                        help="rounds of alternating calls per update case (20x as many for the search step)")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    before_class = model_at(cli.before)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    model_changed = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", MODEL_FILE]).returncode
    print(f"MAZero update and search step, before ({cli.before}) / after (working tree at {commit}, "
          f"{'with' if model_changed else 'without'} uncommitted changes to the model; attention_kernel "
          f"{'built' if model_module.attention_kernel is not None else 'NOT built'}): torch {torch.__version__}, "
          f"1 thread, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {cli.pairs} rounds per "
          f"update case")
    peak_start = peak_flops(1.0)
    rows = []
    cases = [(m, f"update, batch {b}", lambda m=m, b=b: update_calls(m, b, before_class))
             for m in cli.maps for b in cli.batches]
    cases.append(("3m", f"search step (traced), {cli.roots} roots",
                  lambda: search_step_calls("3m", cli.roots, before_class)))
    for map_name, label, build in cases:
        before, after, flops = build()
        calls = [before, after] + ([without_kernel(after)] if "update" in label else [])
        rows.append((map_name, label, flops, *alternating_medians(calls, cli.pairs if "update" in label
                                                                  else 20 * cli.pairs)))
        print(f"  {map_name} {label}: done", file=sys.stderr, flush=True)
    peak_end = peak_flops(1.0)
    peak = max(peak_start, peak_end)
    print(f"peak (1 thread): {peak / 1e9:.1f} GFLOP/s (start {peak_start / 1e9:.1f}, end {peak_end / 1e9:.1f}); "
          f"load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| map | what | FLOPs | before: CPU ms | share of peak | after: CPU ms | share of peak | speed-up | "
          "after without attention_kernel: speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for map_name, label, flops, medians, ratios in rows:
        (before_s, after_s), no_kernel = medians[:2], f"{ratios[2]:.2f}x" if len(ratios) > 2 else "-"
        print(f"| {map_name} | {label} | {flops / 1e9:.4g} G | {before_s * 1e3:.2f} | {flops / before_s / peak:.0%} | "
              f"{after_s * 1e3:.2f} | {flops / after_s / peak:.0%} | {ratios[1]:.2f}x | {no_kernel} |")


if __name__ == "__main__":
    main()
