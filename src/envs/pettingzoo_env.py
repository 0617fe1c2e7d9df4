"""PettingZoo parallel envs as gymnasium envs with Tuple spaces, under EPyMARL's `pz-{library}-{env}` ids.

`env_args.key=pz-mpe-simple-spread-v3` makes gymma build `mpe2.simple_spread_v3.parallel_env(**other env_args)`:
the MPE scenarios left PettingZoo for the `mpe2` package (PettingZoo 1.25); the other libraries keep their place
(`pz-butterfly-pistonball-v6` -> `pettingzoo.butterfly.pistonball_v6`). Ids are registered with gymnasium on
first use, so nothing imports PettingZoo unless a `pz-` key is asked for.
"""
import importlib
import numbers
import pkgutil

import gymnasium
import numpy as np
from gymnasium import spaces

KEY_PREFIX = "pz-"
# library part of a key -> the package that holds its env modules
LIBRARY_PACKAGES = {"mpe": "mpe2"}
INSTALL_HINT = {"mpe2": "pip install mpe2", "pettingzoo": "pip install pettingzoo"}


def module_name(key):
    """`pz-mpe-simple-spread-v3` -> `mpe2.simple_spread_v3`; ValueError for a malformed key."""
    library, _, env_name = key[len(KEY_PREFIX):].partition("-")
    if not library or not env_name:
        raise ValueError(f"PettingZoo key {key!r} must read pz-LIBRARY-ENV, e.g. pz-mpe-simple-spread-v3")
    package = LIBRARY_PACKAGES.get(library, f"pettingzoo.{library}")
    return f"{package}.{env_name.replace('-', '_')}"


def mpe_keys():
    """The pz-mpe- keys of the installed mpe2 scenarios (for error messages)."""
    package = importlib.import_module(LIBRARY_PACKAGES["mpe"])
    return sorted(f"{KEY_PREFIX}mpe-{info.name.replace('_', '-')}" for info in pkgutil.iter_modules(
        package.__path__) if info.name[-2:-1] == "v" and info.name[-1].isdigit())


def register_key(key):
    """Registers `key` with gymnasium if it is a pz- key not registered yet; other keys are left alone."""
    if not key.startswith(KEY_PREFIX) or key in gymnasium.registry:
        return
    name = module_name(key)
    try:
        importlib.import_module(name)
    except ImportError as error:
        package = name.split(".")[0]
        if error.name == package:
            hint = f"PettingZoo envs need `{INSTALL_HINT[package]}`"
        else:
            hint = f"the MPE keys are {', '.join(mpe_keys())}"
        raise ValueError(f"{key}: cannot import {name} ({error}); {hint}") from error
    gymnasium.register(key, entry_point=PettingZooEnv, kwargs={"module_name": name})


class PettingZooEnv(gymnasium.Env):
    """A PettingZoo parallel env with a fixed agent order (`possible_agents`): Tuple observation and action
    spaces, per-agent reward lists, and per-agent terminated / truncated lists. An agent that has left the env
    keeps its last observation, gets reward 0 and counts as terminated and truncated."""

    def __init__(self, module_name, **kwargs):
        module = importlib.import_module(module_name)
        if not hasattr(module, "parallel_env"):
            raise ValueError(f"{module_name} has no parallel_env; gymma needs PettingZoo's parallel API")
        self._env = module.parallel_env(**kwargs)
        self.agents = list(self._env.possible_agents)
        self.observation_space = spaces.Tuple([self._env.observation_space(agent) for agent in self.agents])
        self.action_space = spaces.Tuple([self._env.action_space(agent) for agent in self.agents])
        self.render_mode = getattr(self._env, "render_mode", None)
        self._last_obs = {}

    def reset(self, seed=None, options=None):
        observations, _ = self._env.reset(seed=seed, options=options)
        self._last_obs = dict(observations)
        return tuple(self._last_obs[agent] for agent in self.agents), {}

    def step(self, actions):
        alive = set(self._env.agents)
        observations, rewards, terminations, truncations, infos = self._env.step(
            {agent: action for agent, action in zip(self.agents, actions) if agent in alive})
        self._last_obs.update(observations)
        obs = tuple(self._last_obs[agent] for agent in self.agents)
        agent_rewards = [float(rewards.get(agent, 0.0)) for agent in self.agents]
        terminated = [bool(terminations.get(agent, True)) for agent in self.agents]
        truncated = [bool(truncations.get(agent, True)) for agent in self.agents]
        # EPyMARL's naming of per-agent infos: "{agent}_{key}"
        info = {f"{agent}_{key}": value for agent, agent_info in infos.items() for key, value in agent_info.items()
                if isinstance(value, (numbers.Number, np.bool_))}
        return obs, agent_rewards, terminated, truncated, info

    def render(self):
        return self._env.render()

    def close(self):
        self._env.close()
