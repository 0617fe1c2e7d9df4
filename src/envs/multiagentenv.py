"""EPyMARL's single-environment interface (PyMARL / SMAC conventions).

`step(actions)` returns `(reward, terminated, info)`; a time-out sets `info["episode_limit"] = True` so the runner
stores `terminated=False` for that step and the learner bootstraps from the last state. Rendering and replays are
not part of the interface (no runner calls them); the SMAC and gymma wrappers forward `render()` (and SMAC
`save_replay()`) to the env they wrap.
"""
from abc import ABC, abstractmethod


class MultiAgentEnv(ABC):
    n_agents = None
    episode_limit = None

    @abstractmethod
    def step(self, actions):
        """actions: one int per agent -> (reward: float, terminated: bool, info: dict)."""

    @abstractmethod
    def get_obs(self):
        """List of n_agents flat observation arrays."""

    def get_obs_agent(self, agent_id):
        return self.get_obs()[agent_id]

    @abstractmethod
    def get_obs_size(self):
        """Length of one agent's observation."""

    @abstractmethod
    def get_state(self):
        """Flat global state array."""

    @abstractmethod
    def get_state_size(self):
        """Length of the global state."""

    @abstractmethod
    def get_avail_actions(self):
        """List of n_agents 0/1 lists of length n_actions."""

    def get_avail_agent_actions(self, agent_id):
        return self.get_avail_actions()[agent_id]

    @abstractmethod
    def get_total_actions(self):
        """n_actions, the same for every agent."""

    @abstractmethod
    def reset(self):
        """Starts a new episode; returns (obs, state)."""

    def close(self):
        """Releases resources; the default env holds none."""

    @abstractmethod
    def seed(self, seed=None):
        """Sets the seed of the next episodes (or returns the current one when called without argument)."""

    def get_stats(self):
        return {}

    def get_env_info(self):
        return {
            "state_shape": self.get_state_size(),
            "obs_shape": self.get_obs_size(),
            "n_actions": self.get_total_actions(),
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }
