"""The config loader of main.py, benches and tests: default.yaml < envs/ENV.yaml < algs/ALG.yaml (EPyMARL's order).

main.py applies the `with key=value` updates through Sacred on top; benches and tests call `config_args`.
"""
import os
from types import SimpleNamespace

import yaml

from config_checks import ConfigValueError, check_transition_keys

SRC_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIG_DIR = os.path.join(SRC_DIR, "config")
USAGE = "usage: python src/main.py --config=ALG --env-config=ENV [sacred command and flags] [with key=value ...]"


class UsageError(Exception):
    """Bad command line or config name; main() prints the message and exits with code 2."""


def recursive_dict_update(base, update):
    """Merges `update` into `base`: nested dicts key by key, everything else overwritten."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = recursive_dict_update(base[key], value)
        else:
            base[key] = value
    return base


def available_configs(subdir):
    folder = os.path.join(CONFIG_DIR, subdir)
    return sorted(name[:-5] for name in os.listdir(folder) if name.endswith(".yaml"))


def load_yaml(path):
    with open(path) as f:
        try:
            content = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise UsageError(f"cannot parse {path}: {exc}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UsageError(f"{path} must hold a mapping of config keys")
    return content


def pop_named_config(params, flag, subdir):
    """Removes `flag=NAME` from params and returns (NAME, the YAML of config/subdir/NAME.yaml)."""
    matches = [p for p in params if p == flag or p.startswith(flag + "=")]
    kind = "algorithm" if subdir == "algs" else "environment"
    choices = ", ".join(available_configs(subdir))
    if not matches:
        raise UsageError(f"missing {flag}=NAME ({kind} config); available: {choices}\n{USAGE}")
    if len(matches) > 1:
        raise UsageError(f"{flag} given more than once: {matches}")
    if "=" not in matches[0]:
        raise UsageError(f"write {flag}=NAME (with '='); available: {choices}")
    name = matches[0].split("=", 1)[1]
    path = os.path.join(CONFIG_DIR, subdir, f"{name}.yaml")
    if not name or not os.path.isfile(path):
        raise UsageError(f"unknown {kind} config {name!r} ({flag}); available: {choices}")
    params.remove(matches[0])
    return name, load_yaml(path)


def build_config(params):
    """Merged config (default < env < alg); removes --config/--env-config from params. An algorithm YAML of a
    MAZero run that sets EPyMARL's episode-counted batch_size or buffer_size is refused (check_transition_keys)."""
    config = load_yaml(os.path.join(CONFIG_DIR, "default.yaml"))
    _, env_config = pop_named_config(params, "--env-config", "envs")
    alg_name, alg_config = pop_named_config(params, "--config", "algs")
    recursive_dict_update(config, env_config)
    recursive_dict_update(config, alg_config)
    if "name" not in config:
        raise UsageError(f"config/algs/{alg_name}.yaml must set `name` (used in result paths)")
    try:
        check_transition_keys(config, alg_config)
    except ConfigValueError as exc:
        raise UsageError(f"config/algs/{alg_name}.yaml: {exc}") from None
    return config


def config_args(alg, env, **overrides):
    """build_config([--config=alg, --env-config=env]) with `overrides` (top-level keys) as an args namespace; the
    overrides pass main.py's check of the keys a MAZero run refuses (check_transition_keys)."""
    config = build_config([f"--config={alg}", f"--env-config={env}"])
    unknown = sorted(set(overrides) - set(config) - {"n_agents", "n_actions", "seed", "device"})
    if unknown:
        raise UsageError(f"unknown config key(s) {unknown} for --config={alg} --env-config={env}")
    try:
        check_transition_keys(dict(config, **overrides), overrides)
    except ConfigValueError as exc:
        raise UsageError(str(exc)) from None
    config.update(overrides)
    return SimpleNamespace(**config)
