"""How repeatable is one search's policy target? Two (or more) independent searches of the same stored states
with a MAZero checkpoint's model (noiseless, or with the root noise of the policy targets: --noise), compared
(docs/head_to_head.md, "MAZero budget study on 2s3z").

    python scripts/search_agreement.py RUN_DIR/models/TOKEN/T_ENV [--states 512] [--repeats 2] [--noise] [key=value ...]

RUN_DIR/models/TOKEN/T_ENV is a checkpoint of a MAZero run with save_model=True (agent.th, replay.th, whose replay
names the action masks avail_actions: checkpoints written since issue 26); the run's config is its Sacred
config.json, found next to the checkpoint (RUN_DIR/sacred/*/*/*/config.json) or given with --config. `key=value`
overrides search keys (num_simulations=100 sampled_actions=20 root_search=gumbel ...).
Prints, over `--states` transitions drawn uniformly from the checkpoint's replay:
- action disagreement: share of live agents (more than one available action) whose action in the most visited joint
  action differs between two searches (mean over pairs of repeats);
- marginal TV: total-variation distance between two searches' per-agent marginals of the policy target
  (visit shares over the sampled joint actions), mean over live agents;
- Q spread: max - min of Q over each root's visited children, mean over roots.
"""
import argparse
import glob
import itertools
import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from config_loader import build_config  # noqa: E402
from mcts.search import MCTSSearch, SearchConfig, avail_or_all  # noqa: E402
from modules.agents import REGISTRY as agent_REGISTRY  # noqa: E402
from modules.mazero.model import ModelConfig  # noqa: E402
from utils.checkpoint import load_state  # noqa: E402


def run_config(checkpoint, config_path):
    """The Sacred config.json of the run that wrote `checkpoint` (RUN_DIR/models/TOKEN/T_ENV)."""
    if config_path is None:
        run_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(checkpoint))))
        found = sorted(glob.glob(os.path.join(run_dir, "sacred", "*", "*", "*", "config.json")))
        if not found:
            sys.exit(f"search_agreement: no Sacred config.json under {run_dir}/sacred; give --config")
        config_path = found[-1]
    with open(config_path) as f:
        return json.load(f)


def policy_marginals(search_stats, n_actions):
    """Per-agent marginals [B, N, A] of the visit shares over the sampled joint actions."""
    visits, joint_actions = search_stats.visits, search_stats.joint_actions
    shares = visits / visits.sum(-1, keepdim=True).clamp(min=1.0)  # [B, K_s]
    onehot = torch.nn.functional.one_hot(joint_actions.clamp(min=0), n_actions).float()  # [B, K_s, N, A]
    onehot = onehot * (joint_actions >= 0).unsqueeze(-1)
    return (shares.unsqueeze(-1).unsqueeze(-1) * onehot).sum(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("overrides", nargs="*", help="key=value search overrides (YAML values)")
    parser.add_argument("--config", help="the run's Sacred config.json (default: found next to the checkpoint)")
    parser.add_argument("--states", type=int, default=512, help="stored transitions searched (default 512)")
    parser.add_argument("--repeats", type=int, default=2, help="independent searches per state (default 2)")
    parser.add_argument("--noise", action="store_true",
                        help="search with the root noise of self-play and reanalysis (Dirichlet for the sampled root, "
                             "Gumbel for the Gumbel root), as the policy targets are; default: noiseless, as tests")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_intermixed_args()
    torch.set_num_threads(1)

    # mazero.yaml's defaults under the run's own config: keys added after the run (root_search, ...) get them
    config = build_config(["--config=mazero", "--env-config=smax"])
    config.update(run_config(options.checkpoint, options.config))
    for item in options.overrides:
        key, _, value = item.partition("=")
        if key not in config:
            sys.exit(f"search_agreement: unknown config key {key!r}")
        config[key] = yaml.safe_load(value)
    # tensors, numpy arrays, the RNG's state; replays written before 2026-12-07 also hold numpy scalars
    replay = load_state(os.path.join(options.checkpoint, "replay.th"), allowed=[np._core.multiarray.scalar])
    inputs_all, avail_all = replay["tensors"]["inputs"], replay["tensors"]["avail_actions"]
    sampleable = np.flatnonzero(replay["arrays"]["priorities"] > 0)  # not final observations
    rng = np.random.default_rng(options.seed)
    rows = torch.from_numpy(rng.choice(sampleable, size=min(options.states, len(sampleable)), replace=False))
    n_agents, n_actions = avail_all.shape[1:]
    args = SimpleNamespace(**{**config, "n_agents": n_agents, "n_actions": n_actions})
    model = agent_REGISTRY[args.agent](inputs_all.shape[-1], ModelConfig.from_config(args)).eval()
    model.load_state_dict(load_state(os.path.join(options.checkpoint, "agent.th")))
    search_config = SearchConfig.from_config(args)

    inputs, avail_actions = inputs_all[rows], avail_or_all(avail_all[rows])
    live = avail_actions.sum(-1) > 1  # [M, N]
    chosen, marginals, spreads = [], [], []
    with torch.no_grad():
        for repeat in range(options.repeats):
            search = MCTSSearch(search_config, seed=options.seed * 1000 + repeat + 1)
            search_stats = search.run(model, inputs, avail_actions, add_noise=options.noise).stats
            M = search_stats.visits.shape[0]
            chosen.append(search_stats.joint_actions[torch.arange(M), search_stats.visits.argmax(1)])  # [M, N]
            marginals.append(policy_marginals(search_stats, n_actions))
            visited = search_stats.visits > 0
            q_max = torch.where(visited, search_stats.q_values, -torch.inf).max(1).values
            q_min = torch.where(visited, search_stats.q_values, torch.inf).min(1).values
            spreads.append((q_max - q_min).mean().item())
    disagree, tv = [], []
    for a, b in itertools.combinations(range(options.repeats), 2):
        disagree.append(((chosen[a] != chosen[b]) & live).sum().item() / live.sum().item())
        tv.append((0.5 * (marginals[a] - marginals[b]).abs().sum(-1))[live].mean().item())
    search_keys = {key: config.get(key) for key in ("num_simulations", "sampled_actions", "root_search")
                   if key in config}
    print(json.dumps({"checkpoint": options.checkpoint, "states": len(rows), "repeats": options.repeats,
                      "noise": options.noise,
                      **search_keys, "action_disagreement": round(float(np.mean(disagree)), 4),
                      "marginal_tv": round(float(np.mean(tv)), 4), "q_spread": round(float(np.mean(spreads)), 4)}))


if __name__ == "__main__":
    main()
