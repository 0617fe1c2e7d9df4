"""PyMARL-style entry point: python src/main.py --config=ALG --env-config=ENV [sacred flags] [with key=value ...]

Config precedence (EPyMARL): config/default.yaml < config/envs/ENV.yaml < config/algs/ALG.yaml < `with` updates.
Runs are recorded by Sacred under results/sacred/{name}/{map_name or env_args.key or env}/<id>/.
"""
import ast
import copy
import difflib
import os
import random
import shutil
import sys

import warnings

from config_loader import UsageError, build_config

from config_checks import ConfigValueError, check_config

# sacred 0.8.7 imports pkg_resources, which warns on every start
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
# GitPython (imported by Sacred) must not fail at import when no git executable exists.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def parse_value(text):
    """Sacred's reading of a `with key=value` value: a Python literal, else the raw string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def with_updates(params):
    """The `with key=value` updates as {dotted key: value} (Sacred applies them; main only peeks)."""
    if "with" not in params:
        return {}
    updates = {}
    for token in params[params.index("with") + 1:]:
        if "=" in token:
            key, value = token.split("=", 1)
            updates[key.strip()] = parse_value(value)
    return updates


def check_update_keys(config, updates):
    """Rejects `with` keys that exist nowhere in the merged config, naming close matches.

    Sacred would raise ConfigAddedError for them too, but reports only some of them and without suggestions.
    """
    problems = []
    for dotted_key in updates:
        if dotted_key == "seed":  # Sacred's own key
            continue
        node = config
        parts = dotted_key.split(".")
        for depth, part in enumerate(parts):
            if isinstance(node, dict) and part in node:
                node = node[part]
                continue
            known = sorted(node) if isinstance(node, dict) else []
            prefix = ".".join(parts[:depth])
            close = difflib.get_close_matches(part, known, n=2)
            hint = f" (did you mean {' or '.join(repr('.'.join(filter(None, [prefix, c]))) for c in close)}?)" \
                if close else ""
            problems.append(f"{dotted_key!r}{hint}")
            break
    if problems:
        raise UsageError(
            f"unknown config key(s) after `with`: {', '.join(problems)}. Sacred rejects new keys "
            f"(ConfigAddedError); check the spelling, or pass -f/--force to add a key on purpose."
        )


def effective(config, updates, dotted_key, default=None):
    """The value `dotted_key` will have after the `with` updates."""
    if dotted_key in updates:
        return updates[dotted_key]
    node = config
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def free_id_file_observer(basedir):
    """A FileStorageObserver for `basedir` that numbers its record with the next free folder of its own."""
    from sacred.observers import FileStorageObserver

    class FreeIdFileStorageObserver(FileStorageObserver):
        def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
            own_id = super().started_event(ex_info, command, host_info, start_time, config, meta_info, None)
            return own_id if _id is None else _id

    return FreeIdFileStorageObserver(basedir)


def add_extra_file_storage(ex, sacred_dir, log):
    """Replaces Sacred's own -F observer, which would use the id chosen for another folder or database; that id
    may already exist in DIR (another algorithm's run numbered the same) and the run would die with
    FileExistsError."""

    @ex.option_hook
    def extra_file_storage(options):
        basedir = options.get("--file_storage")
        if not basedir:
            return
        options["--file_storage"] = None
        if os.path.abspath(basedir) == os.path.abspath(sacred_dir):
            log.warning("-F %s is the default record folder: recording the run there once", basedir)
            return
        ex.observers.append(free_id_file_observer(basedir))


def build_experiment(config, updates, log):
    from sacred import SETTINGS, Experiment
    from sacred.utils import apply_backspaces_and_linefeeds

    from run.common import env_label, results_root

    # "fd" captures the output of subprocesses (env workers) too; set "no" to see stdout unbuffered
    SETTINGS["CAPTURE_MODE"] = "fd"
    save_git_info = bool(effective(config, updates, "save_git_info", True))
    if save_git_info and shutil.which("git") is None:
        log.warning("no git executable found: running with save_git_info=False")
        save_git_info = False
    ex = Experiment("pymarl", save_git_info=save_git_info)
    ex.logger = log
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    # Sacred would draw the seed after the config hooks run; drawing it here lets env_args.seed follow it
    config.setdefault("seed", random.SystemRandom().randrange(2 ** 31))
    ex.add_config(config)

    label_config = {"env": effective(config, updates, "env"),
                    "env_args": {"map_name": effective(config, updates, "env_args.map_name"),
                                 "key": effective(config, updates, "env_args.key")}}
    sacred_dir = os.path.join(results_root(effective(config, updates, "local_results_path")), "sacred",
                              str(effective(config, updates, "name")), env_label(label_config))
    # Sacred hands every observer the id of the highest-priority one (a -m / -s database's own counter, or this
    # folder's): each folder record takes its own next free number instead of one that may exist there already
    ex.observers.append(free_id_file_observer(sacred_dir))
    add_extra_file_storage(ex, sacred_dir, log)

    @ex.config_hook
    def seed_env(config, command_name, logger):
        # the env's seed is the run's seed; set here (not in my_main) so config.json records it
        return {"env_args": {"seed": config["seed"]}}

    @ex.main
    def my_main(_run, _config, _log):
        import numpy as np
        import torch

        from run import REGISTRY as run_REGISTRY

        run_config = copy.deepcopy(_config)  # Sacred's config is read-only
        seed = run_config["seed"]
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        torch.set_num_threads(run_config["torch_threads"])
        run_key = run_config["run"]
        if run_key not in run_REGISTRY:
            raise SystemExit(f"ERROR: unknown run loop {run_key!r}; registered: {', '.join(sorted(run_REGISTRY))}")
        run_REGISTRY[run_key](_run, run_config, _log)

    return ex


def main(argv):
    from utils.logging import get_logger

    log = get_logger()
    params = list(argv)
    try:
        config = build_config(params)
        updates = with_updates(params)
        if not {"-f", "--force"} & set(params):
            check_update_keys(config, updates)
        check_config({**config, **{key: value for key, value in updates.items() if "." not in key}})
    except (UsageError, ConfigValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(2)
    ex = build_experiment(config, updates, log)
    ex.run_commandline(params)


if __name__ == "__main__":
    main(sys.argv)
