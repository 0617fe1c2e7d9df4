"""EPyMARL's single-environment interface (PyMARL / SMAC conventions).

`step(actions)` returns `(reward, terminated, info)`; a time-out sets `info["episode_limit"] = True` so the runner
stores `terminated=False` for that step and the learner bootstraps from the last state.
"""


class MultiAgentEnv:
    n_agents = None
    episode_limit = None

    def step(self, actions):
        """actions: one int per agent -> (reward: float, terminated: bool, info: dict)."""
        raise NotImplementedError

    def get_obs(self):
        """List of n_agents flat observation arrays."""
        raise NotImplementedError

    def get_obs_agent(self, agent_id):
        return self.get_obs()[agent_id]

    def get_obs_size(self):
        raise NotImplementedError

    def get_state(self):
        """Flat global state array."""
        raise NotImplementedError

    def get_state_size(self):
        raise NotImplementedError

    def get_avail_actions(self):
        """List of n_agents 0/1 lists of length n_actions."""
        raise NotImplementedError

    def get_avail_agent_actions(self, agent_id):
        return self.get_avail_actions()[agent_id]

    def get_total_actions(self):
        raise NotImplementedError

    def reset(self):
        """Starts a new episode; returns (obs, state)."""
        raise NotImplementedError

    def render(self):
        raise NotImplementedError(f"{type(self).__name__} cannot render")

    def close(self):
        """Releases resources; the default env holds none."""

    def seed(self, seed=None):
        raise NotImplementedError

    def save_replay(self):
        raise NotImplementedError(f"{type(self).__name__} cannot save replays")

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
