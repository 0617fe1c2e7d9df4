"""MAZero controller (`mazero_mac`): acts from a batched MCTS over the envs the runner asks about.

Training: the root is searched with Dirichlet noise and the joint action is sampled from the root visit counts of
the sampled joint actions (temperature 1, or the decaying schedule of `acting_temperature_decay`); before the
learner's first update (the run loop says when, through `set_training_started`) it is drawn uniformly among the
root's sampled joint actions, as the official worker does (docs/mazero.md, "Acting"). With `root_search: gumbel`
self-play takes Sequential Halving's winner, or with `gumbel_selfplay_action: visits` the same visit-count rules
(docs/gumbel.md). The search statistics go into the episode batch (`extra_scheme`).
Test: noiseless search and the most visited joint action (`test_mcts: True`, the official default), or the argmax
of each agent's masked policy without search (`test_mcts: False`, paper Table 8).
"""
import time
from dataclasses import dataclass

import numpy as np
import torch

from config_checks import GUMBEL_SELFPLAY_ACTIONS, MAZERO_PARTS, Int, OneOf
from mcts.search import MCTSSearch, SearchConfig, SearchStats, avail_or_all
from modules.agents import REGISTRY as agent_REGISTRY
from modules.mazero.model import ModelConfig
from utils.checkpoint import load_state
from utils.config_record import check_record, record_from_config


@dataclass(frozen=True)
class ActingConfig:
    """What the controller reads besides its model and search (docs/mazero.md, "Acting"); fields are config keys."""
    agent: str  # the world model's registry key (modules/agents): "mazero" or "mazero_flat"
    device: str  # where the model and the search latents live: "cuda" or "cpu" (run.common.make_args)
    n_agents: int  # N
    n_actions: int  # A, actions per agent
    obs_last_action: bool  # append the previous one-hot action to each agent's input
    obs_agent_id: bool  # append the one-hot agent id to each agent's input
    acting_temperature_decay: bool  # self-play samples visits^(1/T), T = 1 / 0.5 / 0.25 over the run
    # The Gumbel root's self-play action: "winner" (Sequential Halving's, Gumbel MuZero's) or "visits" (drawn from
    # the visit counts by the rules above, as the sampled root's: keeps trying joint actions the model undervalues)
    gumbel_selfplay_action: str
    test_mcts: bool  # test episodes act with a noiseless search; False = argmax of the masked policy
    t_max: int  # env steps of the run (the temperature schedule's unit)
    seed: int  # the run's seed: of the search and (with 1) of the action sampler

    def __post_init__(self):
        check_record(self, agent=OneOf(MAZERO_PARTS["agent"]), device=OneOf(("cuda", "cpu")), n_agents=Int(1),
                     n_actions=Int(1), gumbel_selfplay_action=OneOf(GUMBEL_SELFPLAY_ACTIONS))


class MAZeroMAC:
    """The mac registry's entry `mazero_mac`, built as REGISTRY[name](scheme, groups, args): its records are read
    from args here, once."""

    def __init__(self, scheme, groups, args):
        self.config = record_from_config(ActingConfig, args)
        self.search_config = SearchConfig.from_config(args)
        self.input_dim = self._input_dim(scheme)
        model_config = ModelConfig.from_config(args)
        self.agent = agent_REGISTRY[self.config.agent](self.input_dim, model_config).to(self.config.device).eval()
        self.search = MCTSSearch(self.search_config, seed=self.config.seed)
        self.rng = np.random.default_rng([self.config.seed, 1])  # action sampling, apart from the search's RNG
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
        t_max = self.config.t_max
        if not self.config.acting_temperature_decay or t_env < 0.5 * t_max:
            return 1.0
        return 0.5 if t_env < 0.75 * t_max else 0.25

    def set_training_started(self, started):
        """Whether the learner has made an update: before, joint actions are drawn uniformly among the sampled ones."""
        self.training_started = started

    def time_spent(self):
        """Cumulative wall-clock seconds by part of the run's time profile."""
        return {"selfplay_search": self.search_seconds}

    # --- inputs ------------------------------------------------------------------------------------------------
    def _input_dim(self, scheme):
        input_dim = scheme["obs"]["vshape"]
        if self.config.obs_last_action:
            input_dim += self.config.n_actions
        if self.config.obs_agent_id:
            input_dim += self.config.n_agents
        return input_dim

    def build_inputs(self, batch, t):
        """Agent inputs at time(s) t: [B, N, D] for an int t, [B, T, N, D] for a slice."""
        obs = batch["obs"][:, t]
        parts = [obs]
        if self.config.obs_last_action:
            onehot = batch["actions_onehot"]
            if isinstance(t, slice):
                # previous action of every step: shift by one, zeros before the first step
                previous = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], dim=1)[:, t]
            else:
                previous = onehot[:, t - 1] if t > 0 else torch.zeros_like(onehot[:, 0])
            parts.append(previous.to(obs.dtype))
        if self.config.obs_agent_id:
            n_agents = self.config.n_agents
            eye = torch.eye(n_agents, dtype=obs.dtype)
            parts.append(eye.expand(*obs.shape[:-1], n_agents))
        return torch.cat(parts, dim=-1)

    # --- acting ------------------------------------------------------------------------------------------------
    def init_hidden(self, batch_size):
        """The MAZero model is feed-forward (stacked_observations = 1): there is no recurrent state to reset."""

    @torch.no_grad()
    def select_actions(self, ep_batch, t_ep, t_env, bs=slice(None), test_mode=False):
        inputs = self.build_inputs(ep_batch, t_ep)[bs]
        avail_actions = avail_or_all(ep_batch["avail_actions"][bs, t_ep])
        if test_mode and not self.config.test_mcts:
            return self.policy_argmax(inputs, avail_actions)
        start = time.perf_counter()
        result = self.search.run(self.agent, inputs, avail_actions, add_noise=not test_mode)
        elapsed = time.perf_counter() - start
        search_stats = result.stats
        B = search_stats.visits.shape[0]
        if test_mode:
            self.test_search_seconds += elapsed
            return search_stats.joint_actions[np.arange(B), result.selected]  # the most visited (Gumbel: halving's)
        self.search_seconds += elapsed
        if self.search_config.root_search == "gumbel" and self.config.gumbel_selfplay_action == "winner":
            # Sequential Halving's winner of a Gumbel-noised search
            return search_stats.joint_actions[np.arange(B), result.selected], search_stats.episode_fields()
        if self.training_started:
            visits = search_stats.visits.numpy().astype(np.float64) ** (1.0 / self.acting_temperature(t_env))
            probs = visits / visits.sum(1, keepdims=True)
        else:  # uniform among the sampled joint actions (rows padded with -1 are not sampled)
            sampled = (search_stats.joint_actions[..., 0] >= 0).numpy().astype(np.float64)
            probs = sampled / sampled.sum(1, keepdims=True)
        choice = np.array([self.rng.choice(probs.shape[1], p=p) for p in probs])
        return search_stats.joint_actions[np.arange(B), choice], search_stats.episode_fields()

    def policy_argmax(self, inputs, avail_actions):
        """Per-agent argmax of the masked policy without search (test_mcts False; the joint argmax for agent:
        mazero_flat)."""
        _, policy_logits = self.agent.predict(self.agent.represent(inputs.to(self.config.device)))
        space = self.agent.action_space
        masked = policy_logits.cpu().masked_fill(~space.encode_avail_actions(avail_actions), -float("inf"))
        return space.decode(masked.argmax(-1))

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
