"""MAZero args for the MAZero tests: src/config/algs/mazero.yaml through main.py's loader (config_loader), with the
matrix-game env config, plus small test budgets."""
from config_loader import config_args


def mazero_args(n_agents=3, n_actions=9, **overrides):
    settings = dict(n_agents=n_agents, n_actions=n_actions, seed=0, learner_log_interval=10000)
    settings.update(overrides)
    return config_args("mazero", "matrix", **settings)
