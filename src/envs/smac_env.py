"""Real SMAC (oxwhirl `smac.env.StarCraft2Env`, StarCraft II), imported only when the sc2 env is used.

A missing or wrong `smac` package, or a StarCraft II that cannot start, raises `envs.errors.SC2SetupError`, whose
message says how to install SC2 4.10, the SMAC maps and requirements-sc2.txt.
"""

import os

from envs.errors import SC2SetupError
from envs.multiagentenv import MultiAgentEnv


def import_starcraft2env():
    """Returns oxwhirl SMAC's StarCraft2Env class, or raises SC2SetupError saying what is wrong."""
    try:
        import smac
    except ImportError as error:
        raise SC2SetupError(f"oxwhirl SMAC is not installed (`import smac` failed: {error}).") from error
    try:
        from smac.env import StarCraft2Env
    except ImportError as error:
        location = getattr(smac, "__file__", None) or "an unknown location"
        raise SC2SetupError(
            f"The installed `smac` package ({location}) has no `smac.env.StarCraft2Env` ({error}); it is probably "
            "SMAC3 from PyPI, which shares the name. Uninstall it (`pip uninstall smac`) before installing oxwhirl "
            "SMAC.") from error
    except Exception as error:  # e.g. protobuf >= 3.21: "Descriptors cannot be created directly"
        raise SC2SetupError(
            f"Importing smac.env failed with {type(error).__name__}: {error}. A protobuf newer than 3.20 breaks "
            "pysc2; requirements-sc2.txt pins protobuf<3.21.") from error
    return StarCraft2Env


def sc2_path_problem():
    """Why StarCraft II cannot be where pysc2 looks for it (SC2PATH, default ~/StarCraftII), or None."""
    sc2_path = os.environ.get("SC2PATH")
    path = sc2_path or os.path.expanduser("~/StarCraftII")
    if os.path.isdir(os.path.join(path, "Versions")):
        return None
    source = f"SC2PATH={sc2_path}" if sc2_path else "SC2PATH is unset, so pysc2 uses ~/StarCraftII"
    return f"StarCraft II is not installed at {path} ({source}; {os.path.join(path, 'Versions')} does not exist)."


class SMACEnv(MultiAgentEnv):
    """SMAC's StarCraft2Env behind the MultiAgentEnv interface; `env_args` are StarCraft2Env's keyword arguments."""

    setup_error = SC2SetupError

    def __init__(self, **env_args):
        self._env = self._make_env(env_args)
        self.map_name = env_args.get("map_name")
        self.n_agents = self._env.n_agents
        self.episode_limit = self._env.episode_limit
        # SMAC starts StarCraft II in its first reset(); do it now, so a missing SC2 fails before training starts
        try:
            self._env.reset()
        except Exception as error:
            reason = f"StarCraft II failed to start ({type(error).__name__}: {error})."
            problem = sc2_path_problem()
            raise self.setup_error(f"{reason} {problem}" if problem else reason) from error

    def _make_env(self, env_args):
        starcraft2env = import_starcraft2env()
        try:
            return starcraft2env(**env_args)
        except KeyError as error:
            raise ValueError(
                f"Unknown SMAC map {env_args.get('map_name')!r} ({error}); `python -m smac.bin.map_list` lists the "
                "maps SMAC knows.") from error

    def reset(self):
        return self._env.reset()

    def step(self, actions):
        return self._env.step([int(a) for a in actions])

    def get_obs(self):
        return self._env.get_obs()

    def get_obs_agent(self, agent_id):
        return self._env.get_obs_agent(agent_id)

    def get_obs_size(self):
        return self._env.get_obs_size()

    def get_state(self):
        return self._env.get_state()

    def get_state_size(self):
        return self._env.get_state_size()

    def get_avail_actions(self):
        return self._env.get_avail_actions()

    def get_avail_agent_actions(self, agent_id):
        return self._env.get_avail_agent_actions(agent_id)

    def get_total_actions(self):
        return self._env.get_total_actions()

    def get_env_info(self):
        return self._env.get_env_info()

    def get_stats(self):
        return self._env.get_stats()

    def seed(self, seed=None):
        if seed is not None:
            raise ValueError("SMAC takes its seed at construction: set env_args.seed (or the run's seed)")
        return self._env.seed()

    def render(self):
        return self._env.render()

    def save_replay(self):
        return self._env.save_replay()

    def close(self):
        self._env.close()
