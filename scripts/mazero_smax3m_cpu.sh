#!/usr/bin/env bash
# MAZero learning run with the CPU preset on SMAX 3m (one seed, 100k env steps), niced so it shares the machine.
# Progress: the run's log prints the time profile (self-play search, env, reanalysis search, gradient steps, test)
# every log_interval; the Sacred record lands in results/sacred/mazero_cpu/3m/<id>/.
# Usage: scripts/mazero_smax3m_cpu.sh [seed] [extra `with` overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
SEED="${1:-1}"
shift || true
# test_interval=5000: evaluation (32 episodes with MCTS) every 5000 env steps instead of 2000, to keep its share
# of the budget small.
exec nice -n 10 python src/main.py --config=mazero_cpu --env-config=smax with env_args.map_name=3m seed="$SEED" \
    test_interval=5000 save_model=True "$@"
