"""The sweep's grid file: configs x env configs x maps x variants x grid values x seeds, expanded into runs.

A grid file is YAML (docs/sweep.md):

    configs: [qmix, mazero_cpu]         # --config names (src/config/algs/)
    env_configs: [smax]                 # --env-config names (src/config/envs/)
    maps: [3m, 2s3z]                    # optional: env_args.map_name values
    seeds: [1, 2, 3]
    with: {t_max: 100000}               # optional: `with` updates of every run
    config_with:                        # optional: `with` updates of the runs of one config
      mazero_cpu: {save_model: True}
    variants:                           # optional: named alternative settings (one run set each)
      s16: {num_simulations: 16}
    grid:                               # optional: every combination of these values
      lr: [0.0005, 0.001]

Every run gets its own name (config, env config, map, variant, grid values, seed), which is the name of its
results folder inside the sweep folder.
"""
import itertools
import os
import re
from dataclasses import dataclass, field

import yaml

import config_loader
import main
from config_checks import ConfigValueError

GRID_KEYS = ("configs", "env_configs", "maps", "seeds", "with", "config_with", "variants", "grid")
# keys the sweep sets itself, one value per run
MANAGED_KEYS = ("seed", "env_args.map_name", "local_results_path", "checkpoint_path", "load_step")


SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class GridError(Exception):
    """A grid file that cannot be run; the message names the file and the key."""


@dataclass
class RunSpec:
    name: str
    config: str
    env_config: str
    seed: int
    updates: dict = field(default_factory=dict)  # dotted key -> value, seed and map included
    resumable: bool = False  # the run loop saves exact-resume checkpoints (run: mazero)

    def command(self, python, results_dir, checkpoint_path=None, t_env=None, sacred_flags=()):
        """argv of src/main.py for this run, recording into results_dir (resuming from checkpoint_path's checkpoint
        at t_env: a newer one there may have been written after the last metrics Sacred flushed)."""
        argv = [python, os.path.join(config_loader.SRC_DIR, "main.py"), f"--config={self.config}",
                f"--env-config={self.env_config}", *sacred_flags, "with"]
        argv += [f"{key}={with_value(value)}" for key, value in self.updates.items()]
        argv.append(f"local_results_path={with_value(results_dir)}")
        if checkpoint_path:
            argv += [f"checkpoint_path={with_value(checkpoint_path)}", f"load_step={t_env}"]
        return argv


def with_value(value):
    """The `with` token text Sacred reads back as `value`: plain when that is unambiguous ('3m'), else repr."""
    text = str(value)
    parsed = main.parse_value(text)
    return text if type(parsed) is type(value) and parsed == value else repr(value)


def flatten(updates, where, prefix=""):
    """{"env_args": {"map_name": "3m"}} -> {"env_args.map_name": "3m"}: one `with` token per leaf."""
    if not isinstance(updates, dict):
        raise GridError(f"{where} must be a mapping of config keys, got {updates!r}")
    flat = {}
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, where, dotted + "."))
        elif isinstance(value, list):
            flat[dotted] = [yaml_number(item) for item in value]
        else:
            flat[dotted] = yaml_number(value)
    return flat


def yaml_number(value):
    """PyYAML reads `5e-4` (no dot) as a string; a grid value written like that means the number."""
    if isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


def name_part(text):
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", str(text))


def _list(grid, key, path, required):
    value = grid.get(key)
    if value is None:
        if required:
            raise GridError(f"{path}: `{key}` is missing (a list)")
        return [None]
    if not isinstance(value, list) or not value:
        raise GridError(f"{path}: `{key}` must be a non-empty list, got {value!r}")
    return value


def _check_names(names, subdir, key, path):
    known = config_loader.available_configs(subdir)
    for name in names:
        if name not in known:
            raise GridError(f"{path}: `{key}` names unknown config {name!r}; available: {', '.join(known)}")


def _check_managed(updates, where):
    for key in MANAGED_KEYS:
        if key in updates:
            raise GridError(f"{where} sets {key!r}, which the sweep sets itself (use `seeds` / `maps`)")


def _parts(grid, path):
    """The grid's named override sets: variants (name -> updates) times grid combinations."""
    variants = grid.get("variants") or {None: {}}
    if not isinstance(variants, dict):
        raise GridError(f"{path}: `variants` must map names to `with` updates")
    variants = {name: flatten(updates or {}, f"{path}: variants.{name}") for name, updates in variants.items()}
    axes = flatten(grid.get("grid") or {}, f"{path}: grid")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{path}: grid.{key} must be a non-empty list of values, got {values!r}")
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    parts = []
    for (variant, variant_updates), combo in itertools.product(variants.items(), combos):
        label = [name_part(variant)] if variant is not None else []
        label += [f"{name_part(key)}={name_part(value)}" for key, value in combo.items()]
        updates = {**variant_updates, **combo}
        _check_managed(updates, f"{path}: variant {variant!r} / grid")
        parts.append((label, updates))
    return parts


def load_grid(path):
    """The grid file's runs as RunSpecs, checked: every `with` key must exist in the run's merged config."""
    try:
        with open(path) as f:
            grid = yaml.safe_load(f)
    except OSError as exc:
        raise GridError(f"cannot read grid file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise GridError(f"cannot parse grid file {path}: {exc}") from None
    if not isinstance(grid, dict):
        raise GridError(f"{path} must hold a mapping with keys {', '.join(GRID_KEYS)}")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise GridError(f"{path}: unknown key(s) {unknown}; a grid file has {', '.join(GRID_KEYS)}")
    configs = _list(grid, "configs", path, True)
    env_configs = _list(grid, "env_configs", path, True)
    _check_names(configs, "algs", "configs", path)
    _check_names(env_configs, "envs", "env_configs", path)
    seeds = _list(grid, "seeds", path, True)
    if not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds):
        raise GridError(f"{path}: `seeds` must be integers, got {seeds!r}")
    common = flatten(grid.get("with") or {}, f"{path}: with")
    _check_managed(common, f"{path}: with")
    per_config = grid.get("config_with") or {}
    if not isinstance(per_config, dict) or set(per_config) - set(configs):
        raise GridError(f"{path}: `config_with` must map names listed in `configs` to `with` updates")
    per_config = {name: flatten(updates or {}, f"{path}: config_with.{name}") for name, updates in per_config.items()}
    for name, updates in per_config.items():
        _check_managed(updates, f"{path}: config_with.{name}")
    specs = []
    for config, env_config, map_name in itertools.product(configs, env_configs, _list(grid, "maps", path, False)):
        for label, updates in _parts(grid, path):
            merged = {**common, **per_config.get(config, {}), **updates}
            if map_name is not None:
                merged["env_args.map_name"] = map_name
            stem = [config, env_config] + ([name_part(map_name)] if map_name is not None else []) + label
            for seed in seeds:
                specs.append(RunSpec("_".join(stem + [f"seed{seed}"]), config, env_config, seed,
                                     {**merged, "seed": seed}))
    _check_runs(specs, path)
    return specs


def _check_runs(specs, path):
    """Unknown `with` keys and bad values (main.py's checks, per config pair) and duplicate run names, before
    anything runs."""
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise GridError(f"{path}: these runs would share a results folder: {duplicates}")
    merged = {}
    for spec in specs:
        key = (spec.config, spec.env_config)
        if key not in merged:
            try:
                merged[key] = config_loader.build_config([f"--config={spec.config}",
                                                          f"--env-config={spec.env_config}"])
            except config_loader.UsageError as exc:
                raise GridError(f"{path}: {exc}") from None
        try:
            main.check_update_keys(merged[key], spec.updates)
            main.check_update_values(merged[key], spec.updates)
        except (config_loader.UsageError, ConfigValueError) as exc:
            raise GridError(f"{path}: run {spec.name}: {exc}") from None
        spec.resumable = main.effective(merged[key], spec.updates, "run") == "mazero"
