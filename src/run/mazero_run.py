"""The `mazero` run loop's steps: synchronous collect / train like the official `train_sync` (docs/mazero.md,
"Run loop"); the cycle (test, log and checkpoint timing) is run.common.train_sequential.

Each cycle collects one episode in each of the `batch_size_run` envs through the harness's runner (the mazero_mac
searches for every acting env at every step), stores the episodes transition by transition in MAZero's
prioritised replay, then trains until updates = updates_per_env_step * t_env (training starts once `batch_size`
transitions are stored).

The log states where wall-clock goes (self-play search, env stepping and batch bookkeeping, reanalysis search,
gradient steps, evaluation) so that users can size the budget keys (num_simulations, sampled_actions, batch_size,
reanalyse_ratio, updates_per_env_step).

Checkpoints hold everything a run needs to continue exactly ("Exact resume" in docs/mazero.md): the learner's
files, the replay buffer (`replay.th`) and `run_state.th` (the state_dict of the loop counters, runner, controller,
learner and logger, and every global RNG stream). They are taken at the end of a loop cycle, between runner.run()
calls, and the last KEEP_CHECKPOINTS are kept.
"""
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import torch

from components.mazero_replay import MAZeroReplayBuffer
from learners import REGISTRY as le_REGISTRY
from mcts.search import SearchStats
from run.common import LoopCounters, env_scheme, load_models, models_dir, run_test_episodes
from utils.checkpoint import find_checkpoint, save_checkpoint
from utils.run_identity import trained_on

PROFILE_PARTS = ("selfplay_search", "env", "reanalyse_search", "gradient", "test")
KEEP_CHECKPOINTS = 2
REPLAY_FILE = "replay.th"
RUN_STATE_FILE = "run_state.th"


def store_episodes(episode_batch, mac, buffer):
    """Moves every episode of a runner batch into the transition-level replay."""
    inputs = mac.build_inputs(episode_batch, slice(None))  # [B, T_max + 1, N, D]
    lengths = episode_batch["filled"][:, :, 0].sum(1) - 1  # filled rows = transitions + the final observation
    actions = episode_batch["actions"][..., 0]
    avail = episode_batch["avail_actions"].bool()
    rewards = episode_batch["reward"][..., 0]
    terminated = episode_batch["terminated"][..., 0]
    for b, T in enumerate(lengths.tolist()):
        buffer.add_episode(inputs[b, :T + 1], actions[b, :T], avail[b, :T + 1], rewards[b, :T],
                           bool(terminated[b, T - 1]), SearchStats.from_episode_batch(episode_batch, (b, slice(0, T))))


def save_run_state(path, counters, runner, mac, learner, buffer, logger):
    """Writes the replay buffer and everything else a resumed run needs besides the learner's files."""
    torch.save(buffer.state_dict(), f"{path}/{REPLAY_FILE}")
    torch.save({
        "counters": asdict(counters),
        "runner": runner.state_dict(),
        "mac": mac.state_dict(),
        "learner": learner.state_dict(),
        "logger": logger.state_dict(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "torch_rng": torch.get_rng_state(),
    }, f"{path}/{RUN_STATE_FILE}")


def upgrade_run_state(state):
    """A run_state.th written before the objects owned their state (flat keys, `model_save_time`) in today's form."""
    if "mac" in state:
        return state
    state = dict(state)
    state["mac"] = {"rng": state.pop("mac_rng"), "search": state.pop("mac_search")}
    state["learner"] = {"log_stats_t": state.pop("learner_log_stats_t")}
    state.pop("learner_search", None)  # the reanalysis search is reseeded per batch now
    state["logger"] = {"recent_stats": state.pop("logger_recent_stats")}
    counters = dict(state["counters"])
    counters["last_save_T"] = counters.pop("model_save_time")
    state["counters"] = counters
    return state


def load_run_state(path, runner, mac, learner, buffer, logger):
    """Restores save_run_state(path, ...) and returns the LoopCounters; the learner's files are loaded already."""
    try:
        state = upgrade_run_state(torch.load(f"{path}/{RUN_STATE_FILE}", weights_only=False))
    except FileNotFoundError:
        raise SystemExit(f"ERROR: checkpoint {path} has no {RUN_STATE_FILE} (written before exact resume "
                         f"existed): it can be evaluated (evaluate=True) but not resumed") from None
    buffer.load_state_dict(torch.load(f"{path}/{REPLAY_FILE}", weights_only=False))
    if not runner.load_state_dict(state["runner"]):
        logger.info(f"env {runner.args.env!r} exposes no RNG state: its envs continue from their seeds (exact "
                    f"for deterministic envs such as the matrix games)")
    mac.load_state_dict(state["mac"])
    learner.load_state_dict(state["learner"])
    logger.load_state_dict(state["logger"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    logger.info(f"Resumed at t_env {runner.t_env}, {learner.update_count} updates, replay holding "
                f"{buffer.num_transitions} transitions")
    return LoopCounters(**state["counters"])


def warn_if_replay_exceeds_memory(buffer, logger):
    """A notice naming buffer_size when the full replay would not fit in this machine's memory (it grows as it
    fills, so the run starts; it stops with an error naming buffer_size if an allocation fails)."""
    full_bytes = buffer.capacity * buffer.bytes_per_transition
    memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if full_bytes > memory_bytes:
        fitting = memory_bytes // buffer.bytes_per_transition
        logger.console_logger.warning(
            f"buffer_size={buffer.capacity} transitions of {buffer.bytes_per_transition} bytes take "
            f"{full_bytes / 1e9:.1f} GB when full, more than this machine's {memory_bytes / 1e9:.1f} GB: the replay "
            f"grows as it fills, so the run starts, but it runs out of memory before {fitting} transitions are "
            f"stored; buffer_size={fitting // 2} takes half the memory")


class TimeProfile:
    """Wall-clock seconds per part of the loop, logged as shares of the run's wall-clock so far."""

    def __init__(self, t_start, updates_start):
        self.start = time.perf_counter()
        self.seconds = dict.fromkeys(PROFILE_PARTS, 0.0)
        self.t_start, self.updates_start = t_start, updates_start

    @contextmanager
    def measure(self, part, *sources):
        """Adds the block's wall-clock to `part`, less what `sources` report spending in their own parts
        (their `time_spent()`, cumulative seconds by part)."""
        before = [source.time_spent() for source in sources]
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        for source, spent_before in zip(sources, before):
            for name, seconds in source.time_spent().items():
                self.seconds[name] += seconds - spent_before[name]
                elapsed -= seconds - spent_before[name]
        self.seconds[part] += elapsed

    def log(self, logger, t_env, updates):
        wall = time.perf_counter() - self.start
        for part in PROFILE_PARTS:
            logger.log_stat(f"time_share_{part}", self.seconds[part] / wall, t_env)
        env_steps_per_s = (t_env - self.t_start) / wall
        updates_per_s = (updates - self.updates_start) / wall
        logger.log_stat("env_steps_per_second", env_steps_per_s, t_env)
        logger.log_stat("updates_per_second", updates_per_s, t_env)
        shares = ", ".join(f"{part} {100 * self.seconds[part] / wall:.1f}%" for part in PROFILE_PARTS)
        logger.info(f"MAZero time profile after {wall:.0f} s: {shares}; other "
                    f"{100 * (1 - sum(self.seconds.values()) / wall):.1f}% | {env_steps_per_s:.1f} env steps/s, "
                    f"{updates_per_s:.2f} updates/s")


class MAZeroLoop:
    def __init__(self, args, logger, runner):
        self.args, self.logger, self.runner = args, logger, runner
        _, mac_cls, (scheme, groups, preprocess) = env_scheme(args, runner)
        missing = [field for field in SearchStats.scheme(args.sampled_actions, args.n_agents) if field not in scheme]
        if missing:
            raise ValueError(f"run 'mazero' needs a controller that stores the search statistics {missing} "
                             f"(mac: mazero_mac), got mac {args.mac!r}")
        self.mac = mac_cls(scheme, groups, args)
        runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=self.mac)
        self.learner = le_REGISTRY[args.learner](self.mac, scheme, logger, args)
        self.buffer = MAZeroReplayBuffer(args.buffer_size, args.n_agents, self.mac.input_shape, args.n_actions,
                                         args.sampled_actions, args.per_alpha, args.seed)
        warn_if_replay_exceeds_memory(self.buffer, logger)
        self.profile = None

    def restore(self, counters):
        """Loads the learner's files and, unless evaluating, the replay and run state for an exact resume."""
        self.runner.t_env = load_models(self.args, self.learner, self.logger)
        if self.args.evaluate:
            return counters
        path, _ = find_checkpoint(self.args.checkpoint_path, self.args.load_step)
        return load_run_state(path, self.runner, self.mac, self.learner, self.buffer, self.logger)

    def start(self):
        self.profile = TimeProfile(self.runner.t_env, self.learner.update_count)

    def collect(self):
        self.mac.set_training_started(self.learner.update_count > 0)
        with self.profile.measure("env", self.mac):
            store_episodes(self.runner.run(test_mode=False), self.mac, self.buffer)

    def train(self, episode):
        with self.profile.measure("gradient", self.learner):
            while (self.learner.update_count < int(self.args.updates_per_env_step * self.runner.t_env)
                   and self.buffer.can_sample(self.args.batch_size)):
                self.learner.train(self.buffer, self.runner.t_env)

    def test(self):
        with self.profile.measure("test"):
            run_test_episodes(self.args, self.runner)

    def log(self, t_env):
        self.profile.log(self.logger, t_env, self.learner.update_count)

    def save(self, counters):
        def write(path):
            self.learner.save_models(path)
            save_run_state(path, counters, self.runner, self.mac, self.learner, self.buffer, self.logger)

        path = save_checkpoint(models_dir(self.args), self.runner.t_env, write, keep=KEEP_CHECKPOINTS,
                               trained_on=trained_on(self.args))
        self.logger.info(f"Saved checkpoint ({self.buffer.num_transitions} transitions in replay) to {path}")
        self.logger.save_to_wandb(path, self.runner.t_env)

    def close(self):
        self.learner.close()  # the reanalysis workers (reanalyse_workers >= 1)
