"""MAZero controller (`mazero_mac`): acts from a batched MCTS over the envs the runner asks about.

Training: the root is searched with Dirichlet noise and the joint action is sampled from the root visit counts of
the sampled joint actions (temperature 1, or the decaying schedule of `acting_temperature_decay`); before the learner's first update (the run loop says when, through
`set_training_started`) it is drawn uniformly among the root's sampled joint actions, as the official worker does
(docs/mazero.md, "Acting").
The search statistics go into the episode batch (`extra_scheme`).
Test: noiseless search and the most visited joint action (`test_mcts: True`, the official default), or the argmax
of each agent's masked policy without search (`test_mcts: False`, paper Table 8).
"""
import time

import numpy as np
import torch

from mcts.search import MCTSSearch, SearchStats, legal_or_all
from modules.agents import REGISTRY as agent_REGISTRY
from utils.checkpoint import load_state


class MAZeroMAC:
    def __init__(self, scheme, groups, args):
        self.args = args
        self.n_agents = args.n_agents
        self.n_actions = args.n_actions
        self.input_shape = self._get_input_shape(scheme)
        self.agent = agent_REGISTRY[args.agent](self.input_shape, args).to(args.device).eval()
        self.search = MCTSSearch(args, seed=args.seed)
        self.rng = np.random.default_rng([args.seed, 1])  # action sampling; independent of the search's stream
        self.search_seconds = 0.0  # wall-clock of self-play searches (time_spent)
        self.test_search_seconds = 0.0
        self.training_started = False  # set_training_started: the learner has made an update

    @staticmethod
    def extra_scheme(args):
        """Search statistics of each step (mcts.search.SearchStats), stored for the non-reanalysed policy targets."""
        return SearchStats.scheme(args.sampled_actions, args.n_agents)

    def acting_temperature(self, t_env):
        """T of the self-play action distribution visits^(1/T): 1, or with `acting_temperature_decay` the official
        code's optional schedule 1 / 0.5 / 0.25 over the first half / next quarter / rest of t_max (its schedule
        counts updates, which are proportional to env steps here)."""
        if not self.args.acting_temperature_decay or t_env < 0.5 * self.args.t_max:
            return 1.0
        return 0.5 if t_env < 0.75 * self.args.t_max else 0.25

    def set_training_started(self, started):
        """Whether the learner has made an update: before, joint actions are drawn uniformly among the sampled ones."""
        self.training_started = started

    def time_spent(self):
        """Cumulative wall-clock seconds by part of the run's time profile."""
        return {"selfplay_search": self.search_seconds}

    # --- inputs ------------------------------------------------------------------------------------------------
    def _get_input_shape(self, scheme):
        shape = scheme["obs"]["vshape"]
        if self.args.obs_last_action:
            shape += self.n_actions
        if self.args.obs_agent_id:
            shape += self.n_agents
        return shape

    def build_inputs(self, batch, t):
        """Agent inputs at time(s) t: [B, N, D] for an int t, [B, T, N, D] for a slice."""
        obs = batch["obs"][:, t]
        parts = [obs]
        if self.args.obs_last_action:
            onehot = batch["actions_onehot"]
            if isinstance(t, slice):
                # previous action of every step: shift by one, zeros before the first step
                previous = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], dim=1)[:, t]
            else:
                previous = onehot[:, t - 1] if t > 0 else torch.zeros_like(onehot[:, 0])
            parts.append(previous.to(obs.dtype))
        if self.args.obs_agent_id:
            eye = torch.eye(self.n_agents, dtype=obs.dtype)
            parts.append(eye.expand(*obs.shape[:-1], self.n_agents))
        return torch.cat(parts, dim=-1)

    # --- acting ------------------------------------------------------------------------------------------------
    def init_hidden(self, batch_size):
        """The MAZero model is feed-forward (stacked_observations = 1): there is no recurrent state to reset."""

    @torch.no_grad()
    def select_actions(self, ep_batch, t_ep, t_env, bs=slice(None), test_mode=False):
        inputs = self.build_inputs(ep_batch, t_ep)[bs]
        legal = legal_or_all(ep_batch["avail_actions"][bs, t_ep])
        if test_mode and not self.args.test_mcts:
            _, policy_logits = self.agent.predict(self.agent.represent(inputs.to(self.args.device)))
            space = self.agent.action_space  # per-agent argmax for MAZero, joint argmax for agent: mazero_flat
            masked = policy_logits.cpu().masked_fill(~space.legal(legal), -float("inf"))
            return space.decode(masked.argmax(-1))

        start = time.perf_counter()
        result = self.search.run(self.agent, inputs, legal, add_noise=not test_mode)
        elapsed = time.perf_counter() - start
        stats = result.stats
        B = stats.visits.shape[0]
        if test_mode:
            self.test_search_seconds += elapsed
            return stats.joint_actions[np.arange(B), result.selected]  # the most visited (Gumbel: halving's winner)
        self.search_seconds += elapsed
        if self.args.root_search == "gumbel":  # Sequential Halving's winner of a Gumbel-noised search (docs/gumbel.md)
            return stats.joint_actions[np.arange(B), result.selected], stats.episode_fields()
        if self.training_started:
            visits = stats.visits.numpy().astype(np.float64) ** (1.0 / self.acting_temperature(t_env))
            probs = visits / visits.sum(1, keepdims=True)
        else:  # uniform among the sampled joint actions (rows padded with -1 are not sampled)
            sampled = (stats.joint_actions[..., 0] >= 0).numpy().astype(np.float64)
            probs = sampled / sampled.sum(1, keepdims=True)
        choice = np.array([self.rng.choice(probs.shape[1], p=p) for p in probs])
        return stats.joint_actions[np.arange(B), choice], stats.episode_fields()

    # --- parameters --------------------------------------------------------------------------------------------
    def parameters(self):
        return self.agent.parameters()

    def state_dict(self):
        """What a resumed run needs besides the weights (agent.th): the action sampler's and the search's streams."""
        return {"rng": self.rng.bit_generator.state, "search": self.search.state_dict()}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.search.load_state_dict(state["search"])

    def save_models(self, path):
        torch.save(self.agent.state_dict(), f"{path}/agent.th")

    def load_models(self, path):
        self.agent.load_state_dict(load_state(f"{path}/agent.th"))
