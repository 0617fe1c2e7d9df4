"""The `mazero` run loop's steps (docs/mazero.md, "Run loop"); the cycle (test, log and checkpoint timing) is
run.common.train_sequential.

Each cycle collects one episode in each of the `batch_size_run` envs, stores the episodes transition by transition
in MAZero's prioritised replay, then trains until updates = updates_per_env_step * t_env (training starts once
`batch_transitions` transitions are stored). With `selfplay_workers: 0` (the default, like the official
`train_sync`) the harness's runner collects in this process (the mazero_mac searches for every acting env at every
step) while nothing trains; with N >= 1 the batch comes from the first of N self-play actors to finish one
(run/mazero_selfplay.py), which collect beside the learner (docs/mazero_scaleout.md, "Pipelined run"). Training is
the data path this loop drives (learners/mazero_feed.py): replay -> reanalysis -> learner.update(batch, targets) ->
priorities back to the replay.

The log states where wall-clock goes (self-play search, env stepping and batch bookkeeping, reanalysis search,
gradient steps, evaluation) so that users can size the budget keys (num_simulations, sampled_actions,
batch_transitions, reanalyse_ratio, updates_per_env_step).

The loop's parts take their typed records (run/mazero_config.py), built once from the run's config; `args` serves
only the harness's parts (run.common: runner, test, checkpoint paths and timing) and the controller's registry
entry.

Checkpoints hold everything a run needs to continue exactly ("Exact resume" in docs/mazero.md): the learner's
files, the reanalysis queue, the replay buffer (`replay.th`) and `run_state.th` (the state_dict of the loop
counters, runner, controller, learner and logger, and every global RNG stream). They are taken at the end of a loop
cycle, between runner.run() calls, and the last KEEP_CHECKPOINTS are kept. A pipelined run's checkpoint does not
hold the episodes its actors are collecting: they are dropped (the log and the record's
`checkpoint_episodes_dropped` say how many) and a resumed run's actors collect anew.
"""
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import torch

from components.mazero_replay import MAZeroReplayBuffer
from learners.mazero_feed import TrainingFeed
from learners import REGISTRY as le_REGISTRY
from run.common import LoopCounters, load_models, models_dir, run_test_episodes
from run.mazero_config import build_mazero_config
from run.mazero_selfplay import SelfPlayActors, build_mac, episode_records
from utils.checkpoint import find_checkpoint, load_state, save_checkpoint
from utils.run_identity import trained_on

# selfplay_wait: the learner's wait for the self-play actors' next batch (selfplay_workers >= 1)
PROFILE_PARTS = ("selfplay_search", "env", "selfplay_wait", "reanalyse_search", "gradient", "test")
KEEP_CHECKPOINTS = 2
REPLAY_FILE = "replay.th"
RUN_STATE_FILE = "run_state.th"


def store_episodes(episodes, buffer):
    """Moves episodes (episode_records) into the transition-level replay; returns the transitions stored."""
    for episode in episodes:
        buffer.add_episode(*episode)
    return sum(len(actions) for _, actions, *_ in episodes)


def save_run_state(path, counters, runner, mac, learner, buffer, logger, selfplay=None):
    """Writes the replay buffer and everything else a resumed run needs besides the learner's files; `selfplay`:
    what a pipelined run's checkpoint says of its actors (the episodes in flight it dropped)."""
    torch.save(buffer.state_dict(), f"{path}/{REPLAY_FILE}")
    extra = {} if selfplay is None else {"selfplay": selfplay}
    torch.save({
        **extra,
        "counters": asdict(counters),
        "runner": runner.state_dict(),
        "mac": mac.state_dict(),
        "learner": learner.state_dict(),
        "logger": logger.state_dict(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "torch_rng": torch.get_rng_state(),
    }, f"{path}/{RUN_STATE_FILE}")


def load_run_state(path, runner, mac, learner, buffer, logger):
    """Restores save_run_state(path, ...) and returns the LoopCounters; the learner's files are loaded already."""
    try:
        state = load_state(f"{path}/{RUN_STATE_FILE}")
    except FileNotFoundError:
        raise SystemExit(f"ERROR: checkpoint {path} has no {RUN_STATE_FILE} (written before exact resume "
                         f"existed): it can be evaluated (evaluate=True) but not resumed") from None
    buffer.load_state_dict(load_state(f"{path}/{REPLAY_FILE}"))
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
    """A notice naming buffer_transitions when the full replay would not fit in this machine's memory (it grows as
    it fills, so the run starts; it stops with an error naming buffer_transitions if an allocation fails)."""
    capacity = buffer.config.buffer_transitions
    full_bytes = capacity * buffer.bytes_per_transition
    memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if full_bytes > memory_bytes:
        fitting = memory_bytes // buffer.bytes_per_transition
        logger.console_logger.warning(
            f"buffer_transitions={capacity} transitions of {buffer.bytes_per_transition} bytes take "
            f"{full_bytes / 1e9:.1f} GB when full, more than this machine's {memory_bytes / 1e9:.1f} GB: the replay "
            f"grows as it fills, so the run starts, but it runs out of memory before {fitting} transitions are "
            f"stored; buffer_transitions={fitting // 2} takes half the memory")


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
        logger.log_stat("replay_ratio", updates / max(t_env, 1), t_env)  # updates per env step since t_env 0
        shares = ", ".join(f"{part} {100 * self.seconds[part] / wall:.1f}%" for part in PROFILE_PARTS)
        logger.info(f"MAZero time profile after {wall:.0f} s: {shares}; other "
                    f"{100 * (1 - sum(self.seconds.values()) / wall):.1f}% | {env_steps_per_s:.1f} env steps/s, "
                    f"{updates_per_s:.2f} updates/s")


class MAZeroLoop:
    """The `mazero` run loop's steps; `args` is the run's config namespace, for the harness's parts only."""

    def __init__(self, args, logger, runner):
        self.args, self.logger, self.runner = args, logger, runner
        # With selfplay_workers >= 1 this controller and the runner's envs play only the test episodes.
        self.mac, _ = build_mac(args, runner)  # args now holds the env's n_agents and n_actions
        self.config = build_mazero_config(args)
        self.learner = le_REGISTRY[args.learner](self.mac, logger, self.config.learner)
        self.buffer = MAZeroReplayBuffer(self.config.replay, self.mac.input_dim)
        warn_if_replay_exceeds_memory(self.buffer, logger)
        # replay -> reanalysis -> update -> priorities
        self.feed = TrainingFeed(self.config.reanalysis, self.buffer, self.learner)
        self.actors = None  # the self-play actors (selfplay_workers >= 1), started by start()
        self.weights_sent_at = 0  # update count of the weights the actors were last sent
        self.profile = None

    def restore(self, counters):
        """Loads the learner's files and, unless evaluating, the reanalysis queue, the replay and run state for an
        exact resume."""
        self.runner.t_env = load_models(self.args, self.learner, self.logger)
        if self.args.evaluate:
            return counters
        path, _ = find_checkpoint(self.args.checkpoint_path, self.args.load_step)
        self.feed.load(path)
        return load_run_state(path, self.runner, self.mac, self.learner, self.buffer, self.logger)

    def start(self):
        if self.config.loop.selfplay_workers > 0:  # returns once the actors are up
            self.actors = SelfPlayActors(self.args, self.config.loop, self.config.reanalysis, self.runner.t_env)
            self.send_weights()
            self.actors.request_all(self.learner.update_count > 0)
        self.profile = TimeProfile(self.runner.t_env, self.learner.update_count)

    def send_weights(self):
        self.actors.refresh(self.learner.model)
        self.weights_sent_at = self.learner.update_count

    def collect(self):
        training_started = self.learner.update_count > 0
        if self.actors is None:
            self.mac.set_training_started(training_started)
            with self.profile.measure("env", self.mac):
                store_episodes(episode_records(self.runner.run(test_mode=False), self.mac), self.buffer)
            return
        with self.profile.measure("selfplay_wait"):
            episodes, runner_stats = self.actors.next_batch(training_started)
            self.runner.t_env += store_episodes(episodes, self.buffer)  # t_env: the env steps stored
        for key, value in runner_stats:  # the actors' returns and env statistics, on the run's env-step axis
            self.logger.log_stat(key, value, self.runner.t_env)

    def train(self, episode):
        loop = self.config.loop
        with self.profile.measure("gradient", self.feed):
            while (self.learner.update_count < int(loop.updates_per_env_step * self.runner.t_env)
                   and self.buffer.can_sample()):
                self.feed.train_step(self.runner.t_env)
                if self.actors is not None and (self.learner.update_count - self.weights_sent_at
                                                >= loop.selfplay_refresh):
                    self.send_weights()

    def test(self):
        with self.profile.measure("test"):
            run_test_episodes(self.args, self.runner)

    def log(self, t_env):
        self.profile.log(self.logger, t_env, self.learner.update_count)
        if self.actors is not None:
            self.logger.log_stat("selfplay_actor_restarts", self.actors.restarts, t_env)
            self.logger.log_stat("selfplay_actor_search_seconds", self.actors.search_seconds, t_env)

    def save(self, counters):
        selfplay = None
        if self.actors is not None:
            selfplay = {"episodes_in_flight_dropped": self.actors.in_flight_episodes()}
            self.logger.log_stat("checkpoint_episodes_dropped", selfplay["episodes_in_flight_dropped"],
                                 self.runner.t_env)

        def write(path):
            self.learner.save_models(path)
            self.feed.save(path)
            save_run_state(path, counters, self.runner, self.mac, self.learner, self.buffer, self.logger, selfplay)

        path = save_checkpoint(models_dir(self.args), self.runner.t_env, write, keep=KEEP_CHECKPOINTS,
                               trained_on=trained_on(self.args))
        dropped = "" if selfplay is None else (f"; {selfplay['episodes_in_flight_dropped']} episodes the self-play "
                                               f"actors are collecting are not in it (a resume collects anew)")
        self.logger.info(f"Saved checkpoint ({self.buffer.num_transitions} transitions in replay) to {path}{dropped}")
        self.logger.save_to_wandb(path, self.runner.t_env)

    def close(self):
        if self.actors is not None:
            self.actors.close()
        self.feed.close()  # the reanalysis workers (reanalyse_workers >= 1)
