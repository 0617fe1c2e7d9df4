"""The `mazero` run loop: synchronous collect / train like the official `train_sync` (MAZero spec §5.1).

Each cycle collects one episode in each of the `batch_size_run` envs through the harness's runner (the mazero_mac
searches for every acting env at every step), stores the episodes transition by transition in MAZero's
prioritised replay, then trains until updates = updates_per_env_step * t_env (training starts once `batch_size`
transitions are stored). Evaluation, logging and checkpoints follow the EPyMARL conventions of the default loop.

The log states where wall-clock goes (self-play search, env stepping and batch bookkeeping, reanalysis search,
gradient steps, evaluation) so that users can size the budget keys (num_simulations, sampled_actions, batch_size,
reanalyse_ratio, updates_per_env_step).

Checkpoints hold everything a run needs to continue exactly ("Exact resume" in docs/mazero.md): the learner's
files, the replay buffer (`replay.th`) and `run_state.th` (loop, runner and logger counters and every RNG stream).
They are taken at the end of a loop cycle, between runner.run() calls, and the last KEEP_CHECKPOINTS are kept.
"""
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from components.mazero_replay import MAZeroReplayBuffer
from controllers import REGISTRY as mac_REGISTRY
from learners import REGISTRY as le_REGISTRY
from run.common import (
    Progress, add_env_info, build_scheme, evaluate_sequential, load_models, models_dir,
    run_loop, run_test_episodes, with_runner,
)
from utils.checkpoint import find_checkpoint, save_checkpoint

SEARCH_FIELDS = ("search_actions", "search_visits", "search_qvalues", "search_pred_value")
PROFILE_PARTS = ("selfplay_search", "env", "reanalyse_search", "gradient", "test")
KEEP_CHECKPOINTS = 2
REPLAY_FILE = "replay.th"
RUN_STATE_FILE = "run_state.th"


def run(_run, _config, _log):
    run_loop(run_sequential, _run, _config, _log)


def run_sequential(args, logger):
    with_runner(_train, args, logger)


def store_episodes(episode_batch, mac, buffer):
    """Moves every episode of a runner batch into the transition-level replay."""
    inputs = mac.build_inputs(episode_batch, slice(None))  # [B, T_max + 1, N, D]
    lengths = episode_batch["filled"][:, :, 0].sum(1) - 1  # filled rows = transitions + the final observation
    actions = episode_batch["actions"][..., 0]
    avail = episode_batch["avail_actions"].bool()
    rewards = episode_batch["reward"][..., 0]
    terminated = episode_batch["terminated"][..., 0]
    search = {field: episode_batch[field] for field in SEARCH_FIELDS}
    for b, T in enumerate(lengths.tolist()):
        buffer.add_episode(inputs[b, :T + 1], actions[b, :T], avail[b, :T + 1], rewards[b, :T],
                           bool(terminated[b, T - 1]),
                           {"search_actions": search["search_actions"][b, :T],
                            "search_visits": search["search_visits"][b, :T],
                            "search_qvalues": search["search_qvalues"][b, :T],
                            "search_pred_value": search["search_pred_value"][b, :T, 0]})


@dataclass
class LoopCounters:
    """The run loop's own counters (EPyMARL's names), saved in every checkpoint."""
    episode: int
    last_test_T: int
    last_log_T: int
    model_save_time: int


def save_run_state(path, counters, runner, mac, learner, buffer, logger):
    """Writes the replay buffer and everything else a resumed run needs besides the learner's files."""
    torch.save(buffer.state_dict(), f"{path}/{REPLAY_FILE}")
    torch.save({
        "counters": asdict(counters),
        "runner": runner.state_dict(),
        "learner_log_stats_t": learner.log_stats_t,
        "learner_search": learner.search.state_dict(),
        "mac_rng": mac.rng.bit_generator.state,
        "mac_search": mac.search.state_dict(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "torch_rng": torch.get_rng_state(),
        "logger_recent_stats": {key: list(values) for key, values in logger.stats.items()},
    }, f"{path}/{RUN_STATE_FILE}")


def load_run_state(path, runner, mac, learner, buffer, logger):
    """Restores save_run_state(path, ...) and returns the LoopCounters; the learner's files are loaded already."""
    try:
        state = torch.load(f"{path}/{RUN_STATE_FILE}", weights_only=False)
    except FileNotFoundError:
        raise SystemExit(f"ERROR: checkpoint {path} has no {RUN_STATE_FILE} (written before exact resume "
                         f"existed): it can be evaluated (evaluate=True) but not resumed") from None
    buffer.load_state_dict(torch.load(f"{path}/{REPLAY_FILE}", weights_only=False))
    if not runner.load_state_dict(state["runner"]):
        logger.info(f"env {runner.args.env!r} exposes no RNG state: its envs continue from their seeds (exact "
                    f"for deterministic envs such as the matrix games)")
    learner.log_stats_t = state["learner_log_stats_t"]
    learner.search.load_state_dict(state["learner_search"])
    mac.rng.bit_generator.state = state["mac_rng"]
    mac.search.load_state_dict(state["mac_search"])
    for key, values in state["logger_recent_stats"].items():
        logger.stats[key].extend(values)
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    logger.info(f"Resumed at t_env {runner.t_env}, {learner.update_count} updates, replay holding "
                f"{buffer.num_transitions} transitions")
    return LoopCounters(**state["counters"])


class TimeProfile:
    """Wall-clock seconds per part of the loop, logged as shares of the run's wall-clock so far."""

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds = dict.fromkeys(PROFILE_PARTS, 0.0)

    def log(self, logger, t_env, updates, t_start, updates_start):
        wall = time.perf_counter() - self.start
        for part in PROFILE_PARTS:
            logger.log_stat(f"time_share_{part}", self.seconds[part] / wall, t_env)
        env_steps_per_s = (t_env - t_start) / wall
        updates_per_s = (updates - updates_start) / wall
        logger.log_stat("env_steps_per_second", env_steps_per_s, t_env)
        logger.log_stat("updates_per_second", updates_per_s, t_env)
        shares = ", ".join(f"{part} {100 * self.seconds[part] / wall:.1f}%" for part in PROFILE_PARTS)
        logger.info(f"MAZero time profile after {wall:.0f} s: {shares}; other "
                    f"{100 * (1 - sum(self.seconds.values()) / wall):.1f}% | {env_steps_per_s:.1f} env steps/s, "
                    f"{updates_per_s:.2f} updates/s")


def _train(args, logger, runner):
    env_info = runner.get_env_info()
    add_env_info(args, env_info)
    mac_cls = mac_REGISTRY[args.mac]
    scheme, groups, preprocess = build_scheme(args, env_info, mac_cls)
    missing = [field for field in SEARCH_FIELDS if field not in scheme]
    if missing:
        raise ValueError(f"run 'mazero' needs a controller that stores the search statistics {missing} "
                         f"(mac: mazero_mac), got mac {args.mac!r}")
    mac = mac_cls(scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    learner = le_REGISTRY[args.learner](mac, scheme, logger, args)
    buffer = MAZeroReplayBuffer(args.buffer_size, args.n_agents, mac.input_shape, args.n_actions,
                                args.sampled_actions, args.per_alpha, args.seed)

    counters = LoopCounters(episode=0, last_test_T=-args.test_interval - 1, last_log_T=0, model_save_time=0)
    if args.checkpoint_path:
        runner.t_env = load_models(args, learner, logger)
        if not args.evaluate:
            path, _ = find_checkpoint(args.checkpoint_path, args.load_step)
            counters = load_run_state(path, runner, mac, learner, buffer, logger)
    elif args.evaluate:
        logger.console_logger.warning("evaluate=True without checkpoint_path: evaluating an untrained model")
    if args.evaluate:
        evaluate_sequential(args, runner, logger)
        return

    t_start, updates_start = runner.t_env, learner.update_count
    progress = Progress(runner.t_env, args.t_max)
    profile = TimeProfile()
    logger.info(f"Beginning training for {args.t_max} timesteps")
    logger.setup_progress(args.t_max, runner.t_env)

    while runner.t_env <= args.t_max:
        mac.training_started = learner.update_count > 0  # before the first update: uniform sampled joint actions
        search_before = mac.search_seconds
        start = time.perf_counter()
        episode_batch = runner.run(test_mode=False)
        store_episodes(episode_batch, mac, buffer)
        collect = time.perf_counter() - start
        profile.seconds["selfplay_search"] += mac.search_seconds - search_before
        profile.seconds["env"] += collect - (mac.search_seconds - search_before)

        reanalyse_before = learner.reanalyse_seconds
        start = time.perf_counter()
        while (learner.update_count < int(args.updates_per_env_step * runner.t_env)
               and buffer.can_sample(args.batch_size)):
            learner.train(buffer, runner.t_env)
        train = time.perf_counter() - start
        profile.seconds["reanalyse_search"] += learner.reanalyse_seconds - reanalyse_before
        profile.seconds["gradient"] += train - (learner.reanalyse_seconds - reanalyse_before)

        if runner.t_env - counters.last_test_T > args.test_interval:
            logger.info(progress.message(runner.t_env))
            counters.last_test_T = runner.t_env
            start = time.perf_counter()
            run_test_episodes(args, runner)
            profile.seconds["test"] += time.perf_counter() - start

        counters.episode += args.batch_size_run
        if runner.t_env - counters.last_log_T >= args.log_interval:
            logger.log_stat("episode", counters.episode, runner.t_env)
            profile.log(logger, runner.t_env, learner.update_count, t_start, updates_start)
            logger.print_recent_stats()
            counters.last_log_T = runner.t_env
        logger.update_progress(runner.t_env)

        # last in the cycle, so that a resumed run starts the next cycle exactly where this one would
        if args.save_model and (runner.t_env - counters.model_save_time >= args.save_model_interval
                                or counters.model_save_time == 0):
            counters.model_save_time = runner.t_env

            def save(path):
                learner.save_models(path)
                save_run_state(path, counters, runner, mac, learner, buffer, logger)

            path = save_checkpoint(models_dir(args), runner.t_env, save, keep=KEEP_CHECKPOINTS)
            logger.info(f"Saved checkpoint ({buffer.num_transitions} transitions in replay) to {path}")
            logger.save_to_wandb(path, runner.t_env)

    logger.info("Finished training")
