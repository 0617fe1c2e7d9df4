"""PyMARL-style entry point: python src/main.py --config=ALG --env-config=ENV [sacred flags] [with key=value ...]

Config precedence (EPyMARL): config/default.yaml < config/envs/ENV.yaml < config/algs/ALG.yaml < `with` updates.
Runs are recorded by Sacred under results/sacred/{name}/{map_name or env_args.key or env}/<id>/.
"""
import ast
import copy
import difflib
import json
import os
import random
import shutil
import signal
import sys
import threading

import warnings
from multiprocessing import resource_tracker

from config_loader import USAGE, UsageError, available_configs, build_config, load_yaml

from config_checks import ConfigValueError, check_config, check_transition_keys, coerce_booleans

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


def with_tokens(params):
    """The tokens after `with` (Sacred's config updates: key=value pairs and config files)."""
    return params[params.index("with") + 1:] if "with" in params else []


def with_updates(params):
    """The `with key=value` updates as {dotted key: value} (Sacred applies them; main only peeks)."""
    updates = {}
    for token in with_tokens(params):
        if "=" in token:
            key, value = token.split("=", 1)
            updates[key.strip()] = parse_value(value)
    return updates


CONFIG_FILE_EXTENSIONS = (".yaml", ".yml", ".json")  # Sacred's `with file` formats that main checks too


def dotted_updates(updates, defaults, prefix=""):
    """A nested update ({env_args: {map_name: 3m}}) as dotted keys, descending where the default is a dict too."""
    flat = {}
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            flat.update(dotted_updates(value, defaults[key], f"{prefix}{key}."))
        else:
            flat[prefix + str(key)] = value
    return flat


def with_file_updates(params, config):
    """The updates of the `with FILE.yaml` / `FILE.json` tokens as {dotted key: value}, later files winning (Sacred
    applies them before the key=value updates)."""
    updates = {}
    for token in with_tokens(params):
        if "=" in token or not token.lower().endswith(CONFIG_FILE_EXTENSIONS):
            continue
        if not os.path.isfile(token):
            raise UsageError(f"config file {token!r} after `with` not found")
        updates.update(dotted_updates(load_yaml(token), config))
    return updates


def set_dotted(config, dotted_key, value):
    """Sets config[a][b] = value for dotted_key 'a.b'."""
    *parents, leaf = dotted_key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def spell_booleans(params, file_updates, coerced):
    """params with each `with key=value` of a boolean key rewritten as key=True / key=False, and a key=True /
    key=False token added for each boolean a config file spelled another way (such as 'no'), so Sacred runs and
    records the bool that the checks accepted."""
    if "with" not in params:
        return params
    start = params.index("with") + 1
    rewritten = params[:start]
    for token in params[start:]:
        key = token.split("=", 1)[0].strip()
        if "=" in token and isinstance(coerced.get(key), bool):
            token = f"{key}={coerced[key]!r}"
        rewritten.append(token)
    given = set(with_updates(params))
    for key, value in file_updates.items():
        if key not in given and isinstance(coerced[key], bool) and coerced[key] is not value:
            rewritten.append(f"{key}={coerced[key]!r}")
    return rewritten


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
    """A FileStorageObserver for `basedir` that numbers its record with the next free folder of its own and writes
    its JSON files atomically."""
    from sacred.observers import FileStorageObserver
    from sacred.serializer import flatten

    class FreeIdFileStorageObserver(FileStorageObserver):
        # the run loop writes the record before each checkpoint (Logger.flush_records) while Sacred's heartbeat
        # thread writes it every beat: one write at a time, so neither loses the other's metrics
        write_lock = threading.Lock()

        def log_metrics(self, metrics_by_name, info):
            with self.write_lock:
                super().log_metrics(metrics_by_name, info)

        def heartbeat_event(self, info, captured_out, beat_time, result):
            with self.write_lock:
                super().heartbeat_event(info, captured_out, beat_time, result)

        def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
            own_id = super().started_event(ex_info, command, host_info, start_time, config, meta_info, None)
            return own_id if _id is None else _id

        def save_json(self, obj, filename):
            """Writes run.json, info.json, metrics.json atomically: a full disk or a kill mid-write leaves the
            previous complete file (Sacred's own truncates it first, and a cut run.json has no status)."""
            path = os.path.join(self.dir, filename)
            tmp_path = f"{path}.tmp"
            try:
                with open(tmp_path, "w") as f:
                    json.dump(flatten(obj), f, sort_keys=True, indent=2)
                os.replace(tmp_path, path)
            except BaseException:
                if os.path.exists(tmp_path):
                    os.remove(tmp_path)
                raise

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


def help_text():
    """--help: usage, the algorithm and env configs, the SMAX maps and where to read more."""
    try:
        from envs.smax_env import available_maps

        maps = ", ".join(available_maps())
    except ImportError as exc:  # JAX missing: the maps cannot be listed, the rest of the help can
        maps = f"(cannot list them: {exc})"
    return "\n".join([
        USAGE, "",
        "Runs one training (or evaluate=True) run recorded by Sacred under results/sacred/; docs/harness.md.",
        f"  --config=ALG       algorithm config (src/config/algs/): {', '.join(available_configs('algs'))}",
        f"  --env-config=ENV   environment config (src/config/envs/): {', '.join(available_configs('envs'))}",
        "  with key=value ... config updates (any key of the merged config), or `with FILE.yaml`",
        f"  SMAX maps (with env_args.map_name=MAP): {maps}",
        "  Sacred flags: print_config, -F DIR, -m HOST:PORT:DB, -s sqlite:///runs.db, -c COMMENT, -u",
        "",
        "example: python src/main.py --config=qmix --env-config=smax with env_args.map_name=3m t_max=200000",
    ])


def checked_params(params):
    """(config, the `with` updates, params) after the config checks; params with booleans spelled as bools."""
    config = build_config(params)
    file_updates = with_file_updates(params, config)
    updates = {**file_updates, **with_updates(params)}
    if not {"-f", "--force"} & set(params):
        check_update_keys(config, updates)
    coerced = check_update_values(config, updates)
    return config, coerced, spell_booleans(params, file_updates, coerced)


def check_update_values(config, updates):
    """The `with` updates ({dotted key: value}) with booleans spelled as bools, after config_checks has checked
    the config they make (and that a MAZero run's updates name no episode-counted size); raises ConfigValueError
    naming the first bad key."""
    coerced = coerce_booleans(config, updates)
    merged = copy.deepcopy(config)
    for key, value in coerced.items():
        set_dotted(merged, key, value)
    check_transition_keys(merged, coerced)
    check_config(merged, defaults=config)
    return coerced


def interrupt(signum, frame):
    """SIGTERM (SLURM, docker stop, timeout) stops a run as Ctrl-C does: Sacred records it INTERRUPTED. Further
    signals are ignored while the run closes its envs and writes its record."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv):
    from utils.logging import get_logger

    params = list(argv)
    if {"-h", "--help"} & set(params[1:params.index("with") if "with" in params else None]):
        print(help_text())
        sys.exit(0)
    log = get_logger()
    try:
        config, updates, params = checked_params(params)
    except (UsageError, ConfigValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(2)
    # a run started in the background by a script (`nohup ... &`) inherits SIGINT ignored: restore Ctrl-C
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    # multiprocessing's resource tracker (started by the first `spawn` env worker) lives until this process exits;
    # started after Sacred's "fd" capture it would hold the capture pipe open and Sacred would wait for it, then
    # warn "tee_stdout.wait timeout": start it now, on the real stdout
    resource_tracker.ensure_running()
    try:
        ex = build_experiment(config, updates, log)
        ex.run_commandline(params)
    except KeyboardInterrupt:
        print("INTERRUPTED: the run stopped on Ctrl-C / SIGTERM; its Sacred record is INTERRUPTED", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv)
