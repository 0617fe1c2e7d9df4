"""MAZero args for the MAZero tests: src/config/algs/mazero.yaml through main.py's loader (config_loader), with the
matrix-game env config, plus small test budgets."""
from config_loader import config_args

# Model sizes small enough for a test to train in seconds.
SMALL = dict(latent_dim=16, representation_hidden=[16], dynamics_hidden=[16], head_hidden=[8], attention_heads=2,
             attention_ff_dim=16, projection_hidden=16, projection_dim=16, predictor_hidden=8)


def mazero_args(n_agents=3, n_actions=9, **overrides):
    settings = dict(n_agents=n_agents, n_actions=n_actions, seed=0, learner_log_interval=10000, device="cpu")
    settings.update(overrides)
    return config_args("mazero", "matrix", **settings)
