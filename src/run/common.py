"""Pieces every run loop shares: args, paths, logger, scheme, runner construction, checkpoints, evaluation."""
import datetime
import os
import pprint
import time
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
from utils.checkpoint import find_checkpoint, save_checkpoint
from utils.logging import Logger
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
    for key, registry in REGISTRIES.items():
        value = config.get(key)
        if value is not None and value not in registry:
            raise ValueError(f"unknown {key} {value!r}; registered: {', '.join(sorted(registry))}")
    check_reward_and_replay_keys(config)
    if config["use_cuda"] and not torch.cuda.is_available():
        config["use_cuda"] = False
        log.info("use_cuda is True but no CUDA device is available: running on CPU")
    batch_size_run = config["batch_size_run"]
    if config["test_nepisode"] < batch_size_run:
        config["test_nepisode"] = batch_size_run
    else:
        # test runs collect batch_size_run episodes each
        config["test_nepisode"] = (config["test_nepisode"] // batch_size_run) * batch_size_run
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
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    args.unique_token = f"{args.name}_seed{args.seed}_{env_label(config)}_{stamp}"
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


def run_loop(run_sequential, _run, _config, _log):
    """Entry shared by the run loops: args and logger around `run_sequential(args, logger)`."""
    args = make_args(_config, _log)
    logger = setup_logger(_run, _log, args)
    try:
        run_sequential(args, logger)
    finally:
        logger.finish()


def with_runner(train, args, logger):
    """Calls `train(args, logger, runner)` with the configured runner and closes its envs afterwards."""
    runner = make_runner(runner_REGISTRY[args.runner], args, logger)
    try:
        train(args, logger, runner)
    finally:
        runner.close_env()


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


def save_models(args, learner, t_env, logger):
    path = save_checkpoint(models_dir(args), t_env, learner.save_models)
    logger.info(f"Saved models to {path}")
    logger.save_to_wandb(path, t_env)
    return path


def load_models(args, learner, logger):
    """Loads the checkpoint under args.checkpoint_path chosen by args.load_step; returns its t_env."""
    try:
        path, t_env = find_checkpoint(args.checkpoint_path, args.load_step)
    except FileNotFoundError as exc:
        raise SystemExit(f"ERROR: {exc}") from None
    logger.info(f"Loading models from {path}")
    learner.load_models(path)
    return t_env


def run_test_episodes(args, runner):
    """`test_nepisode` greedy episodes; the runner logs test_* stats after the last one."""
    for _ in range(max(1, args.test_nepisode // runner.batch_size)):
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
