"""SMAX vector env throughput with a uniform-random policy and numpy I/O (what the parallel runner sees).

    python bench/smax_env_speed.py [--map 3m] [--num-envs 1 8] [--seconds 10]

Episodes run in lock-step like the parallel runner: finished envs stay frozen (inactive) until every env of the
batch has finished, then all reset. Prints env steps/s counting active envs only, step calls/s, and the random
policy's win rate.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from envs.smax_env import SMAXVecEnv  # noqa: E402


def random_actions(avail_actions, rng):
    """One uniformly random available action per agent: avail_actions [B, N, A] -> [B, N]."""
    cumulative = np.cumsum(avail_actions / avail_actions.sum(-1, keepdims=True), axis=-1)
    return (cumulative < rng.random(avail_actions.shape[:2] + (1,))).sum(-1)


def measure(map_name, num_envs, seconds):
    env = SMAXVecEnv(num_envs, map_name=map_name, seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    env.reset()
    env.step(random_actions(env.get_avail_actions(), rng))
    warmup = time.perf_counter() - start  # compilation, or loading it from the persistent cache
    env.reset()
    active = np.ones(num_envs, dtype=bool)
    env_steps = calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, terminated, _ = env.step(random_actions(env.get_avail_actions(), rng), active)
        env_steps += int(active.sum())
        calls += 1
        active &= ~terminated
        if not active.any():
            env.reset()
            active[:] = True
    elapsed = time.perf_counter() - start
    return warmup, env_steps / elapsed, calls / elapsed, env.get_stats()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map", default="3m", help="SMAX map name")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 8], help="numbers of envs B to measure")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per batch size")
    args = parser.parse_args()
    print(f"map {args.map}, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for num_envs in args.num_envs:
        warmup, env_steps_per_s, calls_per_s, stats = measure(args.map, num_envs, args.seconds)
        print(f"B={num_envs}: {env_steps_per_s:,.0f} env steps/s, {calls_per_s:,.0f} step calls/s "
              f"({1e3 / calls_per_s:.2f} ms/call), first reset+step {warmup:.1f} s; random policy won "
              f"{stats['battles_won']} of {stats['battles_game']} episodes")


if __name__ == "__main__":
    main()
