"""`parallel` runner: collects one episode in each of its `num_envs` (config `batch_size_run`) envs per `run()` call.

It talks only to the vector-env interface (envs/vec_env.py): SMAX runs as one in-process vmapped batch, other envs
as `spawn` worker processes. Step alignment in the batch (EPyMARL): step t holds the obs/state/avail_actions seen before
acting and the action, reward and terminated flag of that transition; an env's final step holds its last obs and a
dummy action. A time-out (`info["episode_limit"]`) is stored as terminated=False so the learner bootstraps.
`t_env` counts every transition of every training env; test episodes never advance it.
With `common_reward: False` the envs give one reward per agent: the batch stores them ([..., n_agents]) and the
logs hold EPyMARL's `agent_{i}_return_mean/_std` and `total_return_mean/_std` instead of `return_mean/_std`.
"""
from functools import partial
from numbers import Number

import numpy as np
import torch

from components.episode_buffer import EpisodeBatch
from envs import make_vec_env
from envs.capabilities import reward_env_args


class ParallelRunner:
    def __init__(self, args, logger):
        self.args = args
        self.logger = logger
        self.num_envs = args.batch_size_run
        self.env = self.make_env()
        self.env_info = self.env.get_env_info()
        self.episode_limit = self.env_info["episode_limit"]
        self.t = 0
        self.t_env = 0
        self.train_returns = []
        self.test_returns = []
        self.train_stats = {}
        self.test_stats = {}
        self.log_train_stats_t = -1000000
        self.mac = None
        self.new_batch = None
        self.batch = None

    def make_env(self):
        """The vector env of `num_envs` envs this runner steps (a subclass may build another)."""
        return make_vec_env(self.args.env, self.env_args(), self.num_envs, self.args.env_args["seed"])

    def env_args(self):
        """env_args plus the reward keywords (common_reward, reward_scalarisation) of the envs that take them."""
        return dict(self.args.env_args,
                    **reward_env_args(self.args.env, self.args.common_reward, self.args.reward_scalarisation))

    def setup(self, scheme, groups, preprocess, mac):
        device = "cpu" if self.args.buffer_cpu_only else self.args.device
        self.new_batch = partial(EpisodeBatch, scheme, groups, self.num_envs, self.episode_limit + 1,
                                 preprocess=preprocess, device=device)
        self.mac = mac

    def get_env_info(self):
        return self.env_info

    def state_dict(self):
        """Step counter, the training stats gathered since the last log, and the envs' RNG state if they expose
        it (`get_rng_state`, SMAX). Taken between run() calls: every env is reset at the next run()."""
        state = {"t_env": self.t_env, "log_train_stats_t": self.log_train_stats_t,
                 "train_returns": list(self.train_returns), "train_stats": dict(self.train_stats)}
        if hasattr(self.env, "get_rng_state"):
            state["env_rng"] = self.env.get_rng_state()
        return state

    def load_state_dict(self, state):
        """Restores state_dict(); returns False when the saved state has no env RNG or this env cannot take it
        (the envs then continue from their seeds)."""
        self.t_env = state["t_env"]
        self.log_train_stats_t = state["log_train_stats_t"]
        self.train_returns = list(state["train_returns"])
        self.train_stats = dict(state["train_stats"])
        if "env_rng" in state and hasattr(self.env, "set_rng_state"):
            self.env.set_rng_state(state["env_rng"])
            return True
        return False

    def close_env(self):
        self.env.close()

    def save_replay(self):
        """Every env saves a replay of the episodes it played (StarCraft II writes it under env_args.replay_dir)."""
        self.env.save_replay()
        self.logger.info(f"Saved replays of the {self.args.env} evaluation episodes")

    def reset(self):
        self.batch = self.new_batch()
        self.env.reset()
        self.t = 0

    def run(self, test_mode=False):
        """One episode per env; returns the EpisodeBatch [num_envs, episode_limit + 1]."""
        self.reset()
        B = self.num_envs
        all_envs = np.arange(B)
        self._write_observations(all_envs)
        self.mac.init_hidden(batch_size=B)

        reward_shape = () if self.args.common_reward else (self.args.n_agents,)
        episode_returns = np.zeros((B,) + reward_shape, dtype=np.float64)
        episode_lengths = np.zeros(B, dtype=np.int64)
        running = np.ones(B, dtype=bool)  # env still in its episode
        acting = np.ones(B, dtype=bool)  # env has an observation at step t that needs an action
        final_infos = [{} for _ in range(B)]  # each env's info at its episode's end
        while True:
            bs = np.flatnonzero(acting)
            with torch.no_grad():
                selected = self.mac.select_actions(self.batch, t_ep=self.t, t_env=self.t_env, bs=bs,
                                                   test_mode=test_mode)
            actions, extras = selected if isinstance(selected, tuple) else (selected, {})
            self.batch.update({"actions": actions, **extras}, bs=bs, ts=self.t, mark_filled=False)
            if not running.any():
                break
            if self.t >= self.episode_limit:
                raise RuntimeError(
                    f"env {self.args.env!r} did not end an episode within its episode_limit "
                    f"({self.episode_limit} steps); its get_env_info() must report the true limit"
                )
            env_actions = np.zeros((B, self.args.n_agents), dtype=np.int64)
            env_actions[bs] = actions.cpu().numpy().reshape(len(bs), -1)
            rewards, terminated, infos = self.env.step(env_actions, running)

            stepped = np.flatnonzero(running)
            stored_terminated = []
            for i in stepped:
                episode_returns[i] += rewards[i]
                episode_lengths[i] += 1
                if terminated[i]:
                    running[i] = False
                    final_infos[i] = infos[i]
                stored_terminated.append(bool(terminated[i]) and not infos[i].get("episode_limit", False))
            self.batch.update({"reward": rewards[stepped], "terminated": stored_terminated}, bs=stepped,
                              ts=self.t, mark_filled=False)
            self.t += 1
            self._write_observations(stepped)
            acting[:] = False
            acting[stepped] = True

        if not test_mode:
            self.t_env += int(episode_lengths.sum())
        self._record_episodes(episode_returns, episode_lengths, final_infos, test_mode)
        return self.batch

    def _write_observations(self, envs):
        self.batch.update(
            {
                "state": self.env.get_state()[envs],
                "avail_actions": self.env.get_avail_actions()[envs],
                "obs": self.env.get_obs()[envs],
            },
            bs=envs,
            ts=self.t,
        )

    def _record_episodes(self, episode_returns, episode_lengths, final_infos, test_mode):
        if test_mode:  # the last test batch counts only the episodes test_nepisode still needs
            missing = self.args.test_nepisode - len(self.test_returns)
            episode_returns, episode_lengths = episode_returns[:missing], episode_lengths[:missing]
            final_infos = final_infos[:missing]
        stats = self.test_stats if test_mode else self.train_stats
        returns = self.test_returns if test_mode else self.train_returns
        for info in final_infos:
            for key, value in info.items():
                if isinstance(value, (Number, np.number, np.bool_)):
                    stats[key] = stats.get(key, 0.0) + float(value)
        stats["n_episodes"] = stats.get("n_episodes", 0) + len(episode_returns)
        stats["ep_length"] = stats.get("ep_length", 0) + int(episode_lengths.sum())
        returns.extend(episode_returns.tolist())

        if test_mode and len(self.test_returns) >= self.args.test_nepisode:
            self._log(self.test_returns, self.test_stats, "test_")
        elif not test_mode and self.t_env - self.log_train_stats_t >= self.args.runner_log_interval:
            self._log(self.train_returns, self.train_stats, "")
            epsilon = getattr(getattr(self.mac, "action_selector", None), "epsilon", None)
            if epsilon is not None:
                self.logger.log_stat("epsilon", epsilon, self.t_env)
            self.log_train_stats_t = self.t_env

    def _log(self, returns, stats, prefix):
        returns_array = np.array(returns)  # [episodes] or [episodes, n_agents]
        if self.args.common_reward:
            self.logger.log_stat(prefix + "return_mean", returns_array.mean(), self.t_env)
            self.logger.log_stat(prefix + "return_std", returns_array.std(), self.t_env)
        else:
            for agent in range(returns_array.shape[1]):
                self.logger.log_stat(f"{prefix}agent_{agent}_return_mean", returns_array[:, agent].mean(), self.t_env)
                self.logger.log_stat(f"{prefix}agent_{agent}_return_std", returns_array[:, agent].std(), self.t_env)
            self.logger.log_stat(prefix + "total_return_mean", returns_array.sum(1).mean(), self.t_env)
            self.logger.log_stat(prefix + "total_return_std", returns_array.sum(1).std(), self.t_env)
        returns.clear()
        n_episodes = stats.pop("n_episodes")
        for key, value in stats.items():
            self.logger.log_stat(f"{prefix}{key}_mean", value / n_episodes, self.t_env)
        stats.clear()
