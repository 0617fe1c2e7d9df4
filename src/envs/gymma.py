"""EPyMARL's `gymma` wrapper: a multi-agent gymnasium env (Tuple observation and Discrete action spaces) behind
the MultiAgentEnv interface, e.g. lbforaging:Foraging-8x8-2p-3f-v3, rware:rware-tiny-2ag-v2, or a PettingZoo
parallel env by EPyMARL's `pz-` key (pz-mpe-simple-spread-v3, see envs/pettingzoo_env.py)."""

import numbers

import gymnasium
import numpy as np
from gymnasium import spaces

from envs import pettingzoo_env
from envs.capabilities import REWARD_SCALARISATIONS
from envs.multiagentenv import MultiAgentEnv


class GymmaWrapper(MultiAgentEnv):
    """`gymnasium.make(key, **kwargs)` with a `time_limit`-step TimeLimit; per-agent observations are flattened and
    zero-padded to the longest one, the state is their concatenation, and per-agent rewards are summed (or averaged)
    into the team reward, or returned per agent with common_reward False. A TimeLimit truncation sets
    info["episode_limit"] so the runner bootstraps."""

    def __init__(self, key=None, time_limit=100, pretrained_wrapper=None, seed=0, common_reward=True,
                 reward_scalarisation="sum", **kwargs):
        if not key:
            raise ValueError('gymma needs env_args.key, a gymnasium id such as "lbforaging:Foraging-8x8-2p-3f-v3" '
                             'or "rware:rware-tiny-2ag-v2"')
        if pretrained_wrapper is not None:
            raise ValueError(f"env_args.pretrained_wrapper={pretrained_wrapper!r}: EPyMARL's pretrained-adversary "
                             "wrappers (PretrainedTag, ...) are not supported here; leave it null")
        if reward_scalarisation not in REWARD_SCALARISATIONS:
            raise ValueError(f"reward_scalarisation must be one of {sorted(REWARD_SCALARISATIONS)}, "
                             f"got {reward_scalarisation!r}")
        if not isinstance(time_limit, numbers.Integral) or time_limit < 1:
            raise ValueError(f"time_limit must be a positive integer, got {time_limit!r}")
        kwargs.setdefault("disable_env_checker", True)  # the passive checker warns on every Tuple-space env
        try:
            pettingzoo_env.register_key(key)
            self._env = gymnasium.make(key, max_episode_steps=time_limit, **kwargs)
        except (gymnasium.error.Error, ImportError) as error:
            raise ValueError(f"gymnasium could not make env_args.key={key!r}: {error}") from error
        obs_space, action_space = self._env.observation_space, self._env.action_space
        if not isinstance(obs_space, spaces.Tuple) or not isinstance(action_space, spaces.Tuple):
            raise ValueError(f"{key}: gymma needs Tuple observation and action spaces (one entry per agent), got "
                             f"{obs_space} and {action_space}")
        if not all(isinstance(space, spaces.Discrete) for space in action_space):
            raise ValueError(f"{key}: gymma supports Discrete action spaces only, got {action_space}")
        self.key = key
        self.n_agents = len(action_space)
        self.episode_limit = time_limit
        self._agent_obs_spaces = list(obs_space)
        self._agent_n_actions = [int(space.n) for space in action_space]
        self.n_actions = max(self._agent_n_actions)
        self.obs_dim = max(spaces.flatdim(space) for space in self._agent_obs_spaces)
        self.common_reward = common_reward
        self._scalarise = np.sum if reward_scalarisation == "sum" else np.mean
        self._seed = seed
        self._seed_next_reset = True
        self._obs = None

    def _store_obs(self, agent_obs):
        padded = np.zeros((self.n_agents, self.obs_dim), dtype=np.float32)
        for i, (space, obs) in enumerate(zip(self._agent_obs_spaces, agent_obs)):
            flat = spaces.flatten(space, obs)
            padded[i, :flat.size] = flat
        self._obs = padded

    def reset(self):
        # seed the first episode only, so later episodes continue the env's random stream
        agent_obs, _ = self._env.reset(seed=self._seed if self._seed_next_reset else None)
        self._seed_next_reset = False
        self._store_obs(agent_obs)
        return self.get_obs(), self.get_state()

    def step(self, actions):
        if self._obs is None:
            raise RuntimeError("gymma env stepped before reset()")
        agent_obs, rewards, terminated, truncated, env_info = self._env.step(tuple(int(a) for a in actions))
        self._store_obs(agent_obs)
        if self.common_reward:
            reward = float(self._scalarise(rewards))
        else:
            reward = np.asarray(rewards, dtype=np.float32).reshape(self.n_agents)
        terminated = bool(np.all(terminated))
        truncated = bool(np.all(truncated))
        # keep the env's numeric info (the runner averages final infos); episode_limit marks a time-out
        info = {k: v for k, v in env_info.items() if isinstance(v, (numbers.Number, np.bool_))}
        info["episode_limit"] = truncated and not terminated
        return reward, terminated or truncated, info

    def get_obs(self):
        return list(self._obs)

    def get_obs_size(self):
        return self.obs_dim

    def get_state(self):
        return self._obs.reshape(-1)

    def get_state_size(self):
        return self.n_agents * self.obs_dim

    def get_avail_actions(self):
        return [[1] * n + [0] * (self.n_actions - n) for n in self._agent_n_actions]

    def get_total_actions(self):
        return self.n_actions

    def seed(self, seed=None):
        """Returns the seed; a new `seed` applies at the next reset()."""
        if seed is not None:
            self._seed = seed
            self._seed_next_reset = True
        return self._seed

    def render(self):
        return self._env.render()

    def close(self):
        self._env.close()
