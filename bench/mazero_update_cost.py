"""CPU cost of one MAZero learner update (targets, reanalysis search, gradient step) at a config's budget.

Fills a replay with random SMAC-shaped episodes (3m by default: 3 agents, 9 actions, observation 30 plus the
one-hot last action and agent id the controller appends), builds the real model and learner from a config in
src/config/algs/, and times one training step (`TrainingFeed.train_step`) after a warm-up: CPU time of this
thread (one torch thread; the machine may be shared), wall-clock, and the reanalysis clock. Use it to choose budgets:
an update's cost times `updates_per_env_step * t_max` is the gradient-plus-reanalysis part of a run.

    nice -n 10 python bench/mazero_update_cost.py                       # official mazero.yaml (256 transitions, S 100)
    python bench/mazero_update_cost.py --config mazero_cpu
    python bench/mazero_update_cost.py --map 8m num_simulations=50      # `key=value` overrides the config
"""
import argparse
import dataclasses
import os
import sys
import time
import types

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

import torch  # noqa: E402
import yaml  # noqa: E402

from components.mazero_replay import MAZeroReplayBuffer  # noqa: E402
from config_checks import ConfigValueError, check_transition_keys  # noqa: E402
from learners.mazero_feed import TrainingFeed  # noqa: E402
from learners.mazero_learner import MAZeroLearner  # noqa: E402
from mcts.search import SearchStats  # noqa: E402
from mazero_search import MAPS, alg_args  # noqa: E402  (the search bench's map table and config loader)
from modules.mazero.model import MAZeroModel  # noqa: E402
from run.mazero_config import build_mazero_config  # noqa: E402
EPISODE_LENGTH = 25  # about a 3m battle


class NullLogger:
    def log_stat(self, key, value, t_env):
        pass


def build_args(config, n_agents, n_actions, overrides, device="cpu"):
    """The config namespace of `config` on an SMAX map of n_agents and n_actions with `key=value` overrides."""
    args = alg_args(config, n_agents=n_agents, n_actions=n_actions, seed=0, device=device)
    updates = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if not hasattr(args, key):
            raise SystemExit(f"unknown config key {key!r} in override {item!r}")
        updates[key] = yaml.safe_load(value)
    try:
        check_transition_keys(vars(args), updates)
    except ConfigValueError as exc:
        raise SystemExit(f"ERROR: {exc}") from None
    for key, value in updates.items():
        setattr(args, key, value)
    return args


def filled_replay(config, input_dim, transitions):
    """A replay of the run's replay config (config: MAZeroConfig) holding about `transitions` random transitions
    (room for twice that)."""
    replay_config = dataclasses.replace(config.replay, buffer_transitions=2 * transitions, seed=0)
    N, A, K = replay_config.n_agents, replay_config.n_actions, replay_config.sampled_actions
    replay = MAZeroReplayBuffer(replay_config, input_dim)
    T = EPISODE_LENGTH
    for _ in range(max(1, transitions // T)):
        replay.add_episode(torch.randn(T + 1, N, input_dim), torch.randint(0, A, (T, N)),
                           torch.ones(T + 1, N, A, dtype=torch.bool), torch.rand(T), True,
                           SearchStats(joint_actions=torch.randint(0, A, (T, K, N)), visits=torch.rand(T, K),
                                       q_values=torch.randn(T, K), network_value=torch.randn(T)))
    return replay


def training_feed(config, model, replay):
    """The run loop's TrainingFeed over `replay` and a learner of `model` (config: MAZeroConfig)."""
    learner = MAZeroLearner(types.SimpleNamespace(agent=model), NullLogger(), config.learner)
    return TrainingFeed(config.reanalysis, replay, learner)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mazero", help="algorithm config name (src/config/algs/<name>.yaml)")
    parser.add_argument("--map", default="3m", choices=list(MAPS))
    parser.add_argument("--updates", type=int, default=3, help="timed updates after one warm-up update")
    parser.add_argument("overrides", nargs="*", help="key=value updates of the config")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n_agents, n_actions, obs_dim = MAPS[cli.map]
    args = build_args(cli.config, n_agents, n_actions, cli.overrides)
    config = build_mazero_config(args)
    input_dim = obs_dim + (n_actions if args.obs_last_action else 0) + (n_agents if args.obs_agent_id else 0)
    replay = filled_replay(config, input_dim, max(1000, 4 * args.batch_transitions))
    feed = training_feed(config, MAZeroModel(input_dim, config.model).eval(), replay)
    feed.train_step(t_env=0)  # warm-up: allocator, search pools, lazy imports

    print(f"{cli.config} on {cli.map}-sized data: batch {args.batch_transitions} transitions, K {args.unroll_steps}, "
          f"S {args.num_simulations}, K_s {args.sampled_actions}, reanalyse_ratio {args.reanalyse_ratio}")
    cpu_total = 0.0
    for i in range(cli.updates):
        search = feed.time_spent()["reanalyse_search"]
        cpu, wall = time.thread_time(), time.perf_counter()
        feed.train_step(t_env=0)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        search = feed.time_spent()["reanalyse_search"] - search
        cpu_total += cpu
        print(f"update {i + 1}: {cpu:.2f} s CPU, {wall:.2f} s wall, of which reanalysis search {search:.2f} s wall")
    per_update = cpu_total / cli.updates
    updates = args.updates_per_env_step * args.t_max
    print(f"mean {per_update:.2f} s CPU per update; {updates:.0f} updates (updates_per_env_step "
          f"{args.updates_per_env_step} x t_max {args.t_max}) = {per_update * updates / 3600:.1f} h of one core")


if __name__ == "__main__":
    main()
