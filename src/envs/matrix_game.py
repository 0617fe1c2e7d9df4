"""One-step cooperative matrix games for fast learning tests (two agents, three actions, one step).

Both agents see the same constant observation; the state equals it. The team reward is the payoff of the joint
action. `climbing`: Claus & Boutilier (1998); optimum 11 at (0, 0), with -30 miscoordination penalties next to it.
`penalty`: optimum 10 at (0, 2) or (2, 0), penalty k at (0, 0) and (2, 2), 2 at (1, 1).
"""
import numpy as np

from envs.multiagentenv import MultiAgentEnv

GAMES = ("climbing", "penalty")


def payoff_matrix(game, penalty):
    if game == "climbing":
        return np.array([[11, -30, 0], [-30, 7, 6], [0, 0, 5]], dtype=np.float32)
    if game == "penalty":
        return np.array([[penalty, 0, 10], [0, 2, 0], [10, 0, penalty]], dtype=np.float32)
    raise ValueError(f"Unknown matrix game {game!r}; available games: {', '.join(GAMES)}")


class MatrixGame(MultiAgentEnv):
    def __init__(self, game="climbing", penalty=-100.0, seed=None):
        self.game = game
        self.payoff = payoff_matrix(game, penalty)
        self.n_agents = 2
        self.n_actions = self.payoff.shape[0]
        self.episode_limit = 1
        self._obs = np.ones(1, dtype=np.float32)
        self._seed = seed
        self._done = True

    def reset(self):
        self._done = False
        return self.get_obs(), self.get_state()

    def step(self, actions):
        if self._done:
            raise RuntimeError("MatrixGame.step called after the episode ended; call reset() first")
        a0, a1 = (int(a) for a in actions)
        self._done = True
        # the one step ends the game: a real terminal, not a time-out
        return float(self.payoff[a0, a1]), True, {}

    def get_obs(self):
        return [self._obs.copy() for _ in range(self.n_agents)]

    def get_obs_size(self):
        return self._obs.size

    def get_state(self):
        return self._obs.copy()

    def get_state_size(self):
        return self._obs.size

    def get_avail_actions(self):
        return [[1] * self.n_actions for _ in range(self.n_agents)]

    def get_total_actions(self):
        return self.n_actions

    def seed(self, seed=None):
        # deterministic game: the seed is only recorded
        if seed is not None:
            self._seed = seed
        return self._seed
