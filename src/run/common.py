"""What every run loop shares: the entry, the collect / train / test / log / save skeleton, args, paths, logger,
scheme, runner construction, checkpoint loading and evaluation. A loop file supplies only its algorithm's steps."""
import os
import pprint
import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from components.action_selectors import REGISTRY as selector_REGISTRY
from components.transforms import OneHot
from controllers import REGISTRY as mac_REGISTRY
from envs.capabilities import check_reward_and_replay_keys
from envs.errors import SC2SetupError
from learners import REGISTRY as learner_REGISTRY
from modules.agents import REGISTRY as agent_REGISTRY
from modules.mixers import REGISTRY as mixer_REGISTRY
from runners import REGISTRY as runner_REGISTRY
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.divergence import DivergenceError
from utils.logging import Logger
from utils.run_identity import trained_on, unique_token
from utils.timehelper import time_left, time_str

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def results_root(local_results_path):
    """`local_results_path`, relative paths taken from the repository root (EPyMARL keeps results there)."""
    return local_results_path if os.path.isabs(local_results_path) else os.path.join(REPO_ROOT, local_results_path)


def env_label(config):
    """The env part of result paths: env_args.map_name (SMAC/SMAX), else env_args.key (gymma), else the env."""
    env_args = config.get("env_args") or {}
    label = env_args.get("map_name") or env_args.get("key") or config["env"]
    return str(label).replace(os.sep, "_")


# config keys that name a registry entry
REGISTRIES = {"runner": runner_REGISTRY, "mac": mac_REGISTRY, "learner": learner_REGISTRY, "agent": agent_REGISTRY,
              "action_selector": selector_REGISTRY, "mixer": mixer_REGISTRY}


def args_sanity_check(config, log):
    """Fixes up settings that cannot work as given (EPyMARL semantics); raises ValueError for invalid ones."""
    if "model" in config:  # the MAZero model used to be chosen by `agent: mazero` plus `model:`
        flat = config["model"] == "flat"
        raise ValueError(f"config key `model` is gone: instead of `model: {config['model']}` write "
                         f"`agent: {'mazero_flat' if flat else 'mazero'}` and drop `model`")
    for key, registry in REGISTRIES.items():
        value = config.get(key)
        if value is not None and value not in registry:
            raise ValueError(f"unknown {key} {value!r}; registered: {', '.join(sorted(registry))}")
    check_reward_and_replay_keys(config)
    if config["use_cuda"] and not torch.cuda.is_available():
        config["use_cuda"] = False
        log.info("use_cuda is True but no CUDA device is available: running on CPU")
    batch_size_run = config["batch_size_run"]
    if config["runner"] == "episode" and batch_size_run != 1:
        raise ValueError(f"runner 'episode' needs batch_size_run 1, got {batch_size_run}; use runner=parallel")
    return config


def make_args(config, log):
    """The run's args namespace (config keys plus `device` and `unique_token`); invalid settings exit with code 1."""
    try:
        config = args_sanity_check(dict(config), log)
    except ValueError as exc:
        raise SystemExit(f"ERROR: {exc}") from None
    args = SimpleNamespace(**config)
    args.device = "cuda" if args.use_cuda else "cpu"
    args.unique_token = unique_token(args.name, args.seed, env_label(config))
    return args


def setup_logger(_run, _log, args):
    logger = Logger(_log)
    if args.use_tensorboard:
        tb_dir = os.path.join(results_root(args.local_results_path), "tb_logs", args.unique_token)
        logger.setup_tb(tb_dir)
        _log.info("TensorBoard logs in %s", tb_dir)
    if args.use_wandb:
        logger.setup_wandb(vars(args), results_root(args.local_results_path))
    logger.setup_sacred(_run)
    _log.info("Experiment parameters:\n%s", pprint.pformat(vars(args), indent=4, width=1))
    return logger


def add_env_info(args, env_info):
    args.n_agents = env_info["n_agents"]
    args.n_actions = env_info["n_actions"]
    args.state_shape = env_info["state_shape"]
    args.obs_shape = env_info["obs_shape"]
    args.episode_limit = env_info["episode_limit"]


def build_scheme(args, env_info, mac_cls):
    """EPyMARL's episode scheme, plus the controller's `extra_scheme(args)` fields when it defines them."""
    scheme = {
        "state": {"vshape": env_info["state_shape"]},
        "obs": {"vshape": env_info["obs_shape"], "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (env_info["n_actions"],), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,) if args.common_reward else (args.n_agents,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    extra_scheme = getattr(mac_cls, "extra_scheme", None)
    if extra_scheme is not None:
        extra = extra_scheme(args)
        clashes = sorted(set(extra) & set(scheme))
        if clashes:
            raise ValueError(f"{mac_cls.__name__}.extra_scheme redefines base scheme fields {clashes}")
        scheme.update(extra)
    groups = {"agents": args.n_agents}
    preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=args.n_actions)])}
    return scheme, groups, preprocess


def env_scheme(args, runner):
    """Copies the env's sizes into args; returns (env_info, the controller class, build_scheme's triple)."""
    env_info = runner.get_env_info()
    add_env_info(args, env_info)
    mac_cls = mac_REGISTRY[args.mac]
    return env_info, mac_cls, build_scheme(args, env_info, mac_cls)


def run(loop_cls, _run, _config, _log):
    """The entry of every run loop (REGISTRY binds loop_cls): args and logger around run_sequential. A diverged
    run stops with one line, its record FAILED with `diverged` in info.json (tools.results never counts it); so
    does a run whose checkpoint cannot be written (disk full) or read safely."""
    args = make_args(_config, _log)
    logger = setup_logger(_run, _log, args)
    try:
        run_sequential(loop_cls, args, logger)
    except DivergenceError as exc:
        logger.record_divergence(exc.t_env, str(exc))
        raise SystemExit(f"ERROR: {exc}") from None
    except CheckpointError as exc:  # a full disk while saving, an unsafe file while resuming: one line, FAILED
        raise SystemExit(f"ERROR: {exc}") from None
    finally:
        logger.finish()


def run_sequential(loop_cls, args, logger):
    """Builds the runner and `loop_cls(args, logger, runner)`, then evaluates or trains; closes the envs after."""
    runner = make_runner(runner_REGISTRY[args.runner], args, logger)
    loop = None
    try:
        loop = loop_cls(args, logger, runner)
        counters = LoopCounters(episode=0, last_test_T=-args.test_interval - 1, last_log_T=0, last_save_T=0)
        resumed_from = None
        if args.checkpoint_path:
            counters = loop.restore(counters)
            resumed_from = {"unique_token": os.path.basename(os.path.normpath(args.checkpoint_path)),
                            "checkpoint_path": args.checkpoint_path, "t_env": int(runner.t_env)}
        elif args.evaluate:
            logger.console_logger.warning("evaluate=True without checkpoint_path: evaluating an untrained model")
        if args.evaluate:
            evaluate_sequential(args, runner, logger)
        else:
            logger.record_identity(args.unique_token, resumed_from)
            train_sequential(args, logger, runner, loop, counters)
    finally:
        if loop is not None:
            loop.close()
        runner.close_env()


@dataclass
class LoopCounters:
    """The run loop's own counters (EPyMARL's names; t_env of the last test, log and checkpoint)."""
    episode: int
    last_test_T: int
    last_log_T: int
    last_save_T: int


def train_sequential(args, logger, runner, loop, counters):
    """EPyMARL's cycle: collect, train, test, log, checkpoint, until t_env passes t_max; then finish_training.

    `loop` supplies the algorithm's steps: start(), collect(), train(episode) (episodes collected before this
    cycle), test(), log(t_env) (extra statistics at each log), save(counters) and close() (run_sequential calls it
    at the end). The checkpoint is last in the cycle, so a resumed run starts the next cycle exactly where this
    one would.
    """
    progress = Progress(runner.t_env, args.t_max)
    logger.info(f"Beginning training for {args.t_max} timesteps")
    logger.setup_progress(args.t_max, runner.t_env)
    loop.start()
    while runner.t_env <= args.t_max:
        loop.collect()
        loop.train(counters.episode)
        if runner.t_env - counters.last_test_T >= args.test_interval:
            logger.info(progress.message(runner.t_env))
            counters.last_test_T = runner.t_env
            loop.test()
        counters.episode += args.batch_size_run
        if runner.t_env - counters.last_log_T >= args.log_interval:
            logger.log_stat("episode", counters.episode, runner.t_env)
            loop.log(runner.t_env)
            logger.print_recent_stats()
            counters.last_log_T = runner.t_env
        logger.update_progress(runner.t_env)
        if args.save_model and (runner.t_env - counters.last_save_T >= args.save_model_interval
                                or counters.last_save_T == 0):
            counters.last_save_T = runner.t_env
            logger.flush_records(runner.t_env)  # the record reaches this t_env before the checkpoint exists
            loop.save(counters)
    finish_training(args, logger, runner, loop, counters, progress)


def finish_training(args, logger, runner, loop, counters, progress):
    """Ends every run at its last t_env: a test and a log there unless the last cycle did them, then (save_model) a
    checkpoint of that final state, so curves and checkpoints end at the final t_env however the intervals fall,
    and a resume from the final checkpoint has nothing left to do."""
    t_env = runner.t_env
    finished_now = counters.last_test_T != t_env or counters.last_log_T != t_env
    if counters.last_test_T != t_env:
        logger.info(progress.message(t_env))
        counters.last_test_T = t_env
        loop.test()
    if counters.last_log_T != t_env:
        logger.log_stat("episode", counters.episode, t_env)
        loop.log(t_env)
        logger.print_recent_stats()
        counters.last_log_T = t_env
    if args.save_model and (finished_now or counters.last_save_T != t_env):
        counters.last_save_T = t_env
        logger.flush_records(t_env)
        loop.save(counters)
    logger.info("Finished training")


def make_runner(runner_cls, args, logger):
    """Builds the runner (and so the envs); bad env settings become a one-paragraph error and exit code 1."""
    try:
        return runner_cls(args=args, logger=logger)
    except SC2SetupError as exc:
        raise SystemExit(f"ERROR: {exc}") from None
    except ValueError as exc:
        raise SystemExit(f"ERROR: cannot create env {args.env!r} with env_args {args.env_args}: {exc}") from None


def models_dir(args):
    return os.path.join(results_root(args.local_results_path), "models", args.unique_token)


def load_models(args, learner, logger):
    """Loads the checkpoint under args.checkpoint_path chosen by args.load_step, or the next loadable one when it is
    damaged (utils.checkpoint.load_checkpoint); returns its t_env."""
    try:
        _, t_env = load_checkpoint(args.checkpoint_path, args.load_step, learner.load_models, trained_on(args),
                                   logger.console_logger)
    except CheckpointError as exc:
        raise SystemExit(f"ERROR: {exc}") from None
    args.load_step = t_env  # later look-ups (the MAZero loop's run state) find the checkpoint actually loaded
    return t_env


def run_test_episodes(args, runner):
    """Exactly `test_nepisode` greedy episodes: whole batches of the runner's envs, of which the last counts only
    the episodes still missing; the runner logs test_* stats after the last one."""
    for _ in range(-(-args.test_nepisode // runner.num_envs)):
        runner.run(test_mode=True)


def evaluate_sequential(args, runner, logger):
    run_test_episodes(args, runner)
    if args.save_replay:
        runner.save_replay()
    logger.log_stat("episode", 0, runner.t_env, to_sacred=False)
    logger.print_recent_stats()


class Progress:
    """Console progress line at each evaluation: t_env, ETA and time passed since training started."""

    def __init__(self, t_start, t_max):
        self.start_time = time.time()
        self.t_start = t_start
        self.t_max = t_max

    def message(self, t_env):
        return (f"t_env: {t_env} / {self.t_max} | Estimated time left: "
                f"{time_left(self.start_time, self.t_start, t_env, self.t_max)} | "
                f"Time passed: {time_str(time.time() - self.start_time)}")
