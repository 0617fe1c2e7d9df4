"""Environment registry (key `env`) and the vector-env factory.

Entries are factories called as REGISTRY[key](**env_args). They import their module on first use, so importing
`envs` never imports JAX (smax), SMAC (sc2), SMACv2 (sc2v2) or PettingZoo (gymma's pz- keys). To add an env:
REGISTRY["my_env"] = callable returning a MultiAgentEnv; it then runs under both runners (the parallel runner puts
it in `spawn` worker processes).
"""
import importlib

from envs.vec_env import InProcessVecEnv, SubprocVecEnv


def _lazy(module_name, class_name):
    def make(**env_args):
        return getattr(importlib.import_module(module_name), class_name)(**env_args)

    make.__qualname__ = make.__name__ = f"make_{class_name}"
    return make


REGISTRY = {
    "smax": _lazy("envs.smax_env", "SMAXEnv"),
    "sc2": _lazy("envs.smac_env", "SMACEnv"),
    "sc2v2": _lazy("envs.smacv2_env", "SMACv2Env"),
    "gymma": _lazy("envs.gymma", "GymmaWrapper"),
    "matrix": _lazy("envs.matrix_game", "MatrixGame"),
}

# Native batched implementations, called as VEC_REGISTRY[key](num_envs=B, **env_args) with env_args["seed"]
# the seed of env 0 (env i uses seed + i).
VEC_REGISTRY = {
    "smax": _lazy("envs.smax_env", "SMAXVecEnv"),
}


def check_env_key(env_key):
    if env_key not in REGISTRY:
        raise ValueError(f"Unknown env {env_key!r}; registered envs: {', '.join(sorted(REGISTRY))}")


def make_vec_env(env_key, env_args, num_envs, seed, in_process=False):
    """B = num_envs copies of env `env_key`, env i seeded with seed + i.

    Uses the env's native batched implementation if it has one (SMAX: one jitted vmap in this process);
    otherwise `spawn` worker processes, or with `in_process=True` single envs stepped in this process.
    """
    check_env_key(env_key)
    env_args = dict(env_args)
    if env_key in VEC_REGISTRY:
        env_args["seed"] = seed
        return VEC_REGISTRY[env_key](num_envs=num_envs, **env_args)
    if in_process:
        return InProcessVecEnv([REGISTRY[env_key](**dict(env_args, seed=seed + i)) for i in range(num_envs)])
    return SubprocVecEnv(env_key, env_args, num_envs, seed)
