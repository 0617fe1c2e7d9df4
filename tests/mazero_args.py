"""Builds MAZero args for the MAZero tests from src/config/algs/mazero.yaml plus small test budgets."""
import os
from types import SimpleNamespace

import yaml

ALG_CONFIG = os.path.join(os.path.dirname(__file__), "..", "src", "config", "algs", "mazero.yaml")


def mazero_args(n_agents=3, n_actions=9, **overrides):
    with open(ALG_CONFIG) as f:
        config = yaml.safe_load(f)
    config.update(n_agents=n_agents, n_actions=n_actions, seed=0, learner_log_interval=10000, device="cpu")
    config.update(overrides)
    return SimpleNamespace(**config)
