"""Type and range of every numeric config key and the allowed values of the switches, checked by main.py before
Sacred starts and before any env is built.

`NUMERIC_KEYS` maps each numeric key of config/default.yaml and config/algs/*.yaml to its rule, `SETTING_KEYS` the
switches whose values are names or null; a key the merged config does not hold (an algorithm's key under
another algorithm) is not checked. Every key whose default (in the merged YAML config) is a boolean is a boolean
key: `coerce_booleans` turns the accepted spellings of a `with` value (True/False, true/false, yes/no, 1/0) into a
bool before Sacred records it, and `check_config` refuses anything else by name. `check_config` raises
ConfigValueError naming the key, its value and what it must be; main.py prints it and exits with code 2. MAZero's
typed config records check their own fields by these rules when they are built (utils.config_record.check_record),
so code built without main.py (tests, benches) is checked too.
"""
import math
import numbers
from dataclasses import dataclass


class ConfigValueError(ValueError):
    """A config value of the wrong type or out of range; the message names the key."""


@dataclass(frozen=True)
class Int:
    """An integer (bools and floats refused) >= minimum."""
    minimum: int

    def problem(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"must be an integer >= {self.minimum}"
        return None if value >= self.minimum else f"must be >= {self.minimum}"


@dataclass(frozen=True)
class Real:
    """A finite real number (ints accepted, bools refused) in [low, high], an end excluded when marked open."""
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def describe(self):
        parts = []
        if self.low != -math.inf:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high != math.inf:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return "a real number" + (" " + " and ".join(parts) if parts else "")

    def problem(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return f"must be {self.describe()}"
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = value >= self.high if self.high_open else value > self.high
        return f"must be {self.describe()}" if too_low or too_high else None


@dataclass(frozen=True)
class IntList:
    """A list of integers, each >= minimum (layer sizes; may be empty)."""
    minimum: int

    def problem(self, value):
        if not isinstance(value, (list, tuple)) or any(Int(self.minimum).problem(v) for v in value):
            return f"must be a list of integers >= {self.minimum}"
        return None


def _same_kind(value, choice):
    """True when value may stand for choice: an integer is not a boolean (True == 1), a string only a string."""
    if isinstance(choice, bool) or isinstance(value, bool):
        return isinstance(choice, bool) and isinstance(value, bool)
    if isinstance(choice, numbers.Integral):
        return isinstance(value, numbers.Integral)
    return type(value) is type(choice)


@dataclass(frozen=True)
class OneOf:
    """One of a few allowed integers, names or booleans."""
    choices: tuple

    def problem(self, value):
        ok = any(_same_kind(value, choice) and value == choice for choice in self.choices)
        return None if ok else f"must be one of {', '.join(map(repr, self.choices))}"


BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
BOOLEAN_SPELLINGS = "True/False, true/false, yes/no or 1/0"


@dataclass(frozen=True)
class Bool:
    """True or False (main.py turns the other accepted spellings into these before checking)."""

    def problem(self, value):
        return None if isinstance(value, bool) else f"must be a boolean ({BOOLEAN_SPELLINGS})"


@dataclass(frozen=True)
class Name:
    """A plain name used as one folder of the result paths: no path separator, not '.' or '..'."""

    def problem(self, value):
        if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value:
            return "must be a plain name (no '/', not '.' or '..'): it names a folder under results/"
        return None


@dataclass(frozen=True)
class Text:
    """A non-empty string (an address, a device)."""

    def problem(self, value):
        return None if isinstance(value, str) and value else "must be a non-empty string"


@dataclass(frozen=True)
class Instance:
    """An instance of `cls`: a config record held by another (the reanalysis config's SearchConfig)."""
    cls: type

    def problem(self, value):
        return None if isinstance(value, self.cls) else f"must be a {self.cls.__name__}"


@dataclass(frozen=True)
class OrNull:
    """null, or a value that passes `rule`."""
    rule: object

    def problem(self, value):
        problem = None if value is None else self.rule.problem(value)
        return problem and "must be null or " + problem.removeprefix("must be ")


POSITIVE = Real(0.0, low_open=True)
NON_NEGATIVE = Real(0.0)
UNIT = Real(0.0, 1.0)

NUMERIC_KEYS = {
    # harness (default.yaml, env configs)
    "seed": Int(0),
    "batch_size_run": Int(1),
    "torch_threads": Int(1),
    "test_nepisode": Int(1),
    "test_interval": Int(0),
    "log_interval": Int(0),
    "runner_log_interval": Int(0),
    "learner_log_interval": Int(0),
    "t_max": Int(1),
    "save_model_interval": Int(1),
    "load_step": Int(0),
    "gamma": UNIT,
    "batch_size": Int(1),  # episodes (EPyMARL's QMIX / MAPPO)
    "buffer_size": Int(1),  # episodes
    "lr": POSITIVE,
    "grad_norm_clip": POSITIVE,
    "hidden_dim": Int(1),
    # epsilon-greedy (qmix, vdn, iql)
    "epsilon_start": UNIT,
    "epsilon_finish": UNIT,
    "epsilon_anneal_time": Int(1),
    "evaluation_epsilon": UNIT,
    "target_update_interval_or_tau": POSITIVE,
    "mixing_embed_dim": Int(1),
    "hypernet_layers": OneOf((1, 2)),
    "hypernet_embed": Int(1),
    # PPO (mappo, ippo)
    "critic_lr": POSITIVE,
    "optim_eps": POSITIVE,
    "epochs": Int(1),
    "eps_clip": POSITIVE,
    "entropy_coef": NON_NEGATIVE,
    "gae_lambda": UNIT,
    "huber_delta": POSITIVE,
    # MAZero model
    "latent_dim": Int(1),
    "representation_hidden": IntList(1),
    "dynamics_hidden": IntList(1),
    "head_hidden": IntList(1),
    "projection_hidden": Int(1),
    "projection_dim": Int(1),
    "predictor_hidden": Int(1),
    "value_support_size": Int(1),
    "reward_support_size": Int(1),
    "attention_layers": Int(1),
    "attention_heads": Int(1),
    "attention_ff_dim": Int(1),
    "attention_dropout": Real(0.0, 1.0, high_open=True),
    # MAZero search
    "num_simulations": Int(1),
    "sampled_actions": Int(1),
    "os_rho": UNIT,
    "os_lambda": UNIT,
    "pb_c_base": POSITIVE,
    "pb_c_init": NON_NEGATIVE,
    "value_delta_min": POSITIVE,
    "root_dirichlet_alpha": POSITIVE,
    "root_exploration_fraction": UNIT,
    "gumbel_c_visit": NON_NEGATIVE,
    "gumbel_c_scale": POSITIVE,
    # MAZero training
    "batch_transitions": Int(1),
    "buffer_transitions": Int(2),  # an episode takes its transitions + 1 rows
    "unroll_steps": Int(1),
    "td_steps": Int(1),
    "off_policy_age_fraction": POSITIVE,
    "reanalyse_ratio": UNIT,
    "target_model_interval": Int(1),
    "updates_per_env_step": POSITIVE,
    "reward_loss_coef": NON_NEGATIVE,
    "value_loss_coef": NON_NEGATIVE,
    "policy_loss_coef": NON_NEGATIVE,
    "consistency_loss_coef": NON_NEGATIVE,
    "awpo_alpha": POSITIVE,
    "adv_clip": POSITIVE,
    "per_alpha": NON_NEGATIVE,
    "per_beta_start": UNIT,
    # MAZero reanalysis workers
    "reanalyse_workers": Int(0),
    "reanalyse_prefetch": Int(0),
    "reanalyse_num_cpus": POSITIVE,
    "reanalyse_num_gpus": NON_NEGATIVE,
    "selfplay_workers": Int(0),
    "selfplay_refresh": Int(1),
}


TWO_HOT_TARGETS = ("exact", "official")  # two_hot_target (utils/value_transform.py)
LATENT_GRAD_SCALE_PLACES = ("next_step", "latent")  # latent_grad_scale_at (learners/mazero_learner.py)
GUMBEL_SELFPLAY_ACTIONS = ("winner", "visits")  # gumbel_selfplay_action (controllers/mazero_controller.py)

SETTING_KEYS = {
    # MAZero learner (docs/mazero.md, "Where we differ from the official code")
    "policy_loss": OneOf(("awpo", "bc")),
    "root_search": OneOf(("sampled", "gumbel")),  # mcts.search / docs/gumbel.md
    "gumbel_selfplay_action": OneOf(GUMBEL_SELFPLAY_ACTIONS),
    "two_hot_target": OneOf(TWO_HOT_TARGETS),
    "latent_grad_scale_at": OneOf(LATENT_GRAD_SCALE_PLACES),
    "timeout_terminal": OneOf((True, False)),
    "reanalyse_num_simulations": OrNull(Int(1)),
    "awpo_advantage_norm": OneOf(("batch", "root")),
    "acting_temperature_decay": OneOf((True, False)),
    "ray_address": OrNull(Text()),  # learners/mazero_reanalyse.py: null, "auto" or "host:port"
    # harness: the algorithm label is a folder of results/sacred/ and results/models/ (run.common)
    "name": Name(),
}
BOOLEAN = Bool()


def to_bool(value):
    """The bool an accepted spelling stands for (True/False in any case, yes/no, 1/0), else `value` unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS:
        return BOOLEAN_WORDS[value.strip().lower()]
    return value


def boolean_keys(defaults, prefix=""):
    """Dotted names of the keys whose value in `defaults` (the merged YAML config) is a bool."""
    keys = []
    for key, value in defaults.items():
        if isinstance(value, bool):
            keys.append(prefix + key)
        elif isinstance(value, dict):
            keys += boolean_keys(value, f"{prefix}{key}.")
    return keys


def coerce_booleans(defaults, updates):
    """`updates` ({dotted key: value}) with the value of every boolean key of `defaults` turned into a bool;
    raises ConfigValueError naming the key when a value spells no boolean ('maybe', 2)."""
    booleans = set(boolean_keys(defaults))
    coerced = {}
    for key, value in updates.items():
        if key in booleans:
            value = to_bool(value)
            problem = BOOLEAN.problem(value)
            if problem:
                raise ConfigValueError(f"config key {key!r} {problem}, got {value!r}")
        coerced[key] = value
    return coerced


def _get(config, dotted):
    """(value, True) of a dotted key in a nested config, (None, False) when it is not there."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def check_keys(config, keys):
    """Raises ConfigValueError for the first of `keys` (each in NUMERIC_KEYS or SETTING_KEYS) whose value in
    `config` breaks its rule; keys `config` does not hold are not checked."""
    for key in keys:
        if key in config:
            rule = NUMERIC_KEYS.get(key) or SETTING_KEYS[key]
            problem = rule.problem(config[key])
            if problem:
                raise ConfigValueError(f"config key {key!r} {problem}, got {config[key]!r}")


# MAZero's registry entries per key. They pass MAZero's own objects between them (a transition replay, search
# statistics, a world model), so a config takes all of its run / mac / learner / agent from here or none of them.
MAZERO_PARTS = {"run": ("mazero",), "mac": ("mazero_mac",), "learner": ("mazero_learner",),
                "agent": ("mazero", "mazero_flat")}


def check_registry_parts(config):
    """Raises ConfigValueError when `config` mixes MAZero's run / mac / learner / agent with other ones (e.g.
    `run: default` with `learner: mazero_learner`, which would fail only at the first update)."""
    present = [key for key in MAZERO_PARTS if key in config]
    ours = [key for key in present if config[key] in MAZERO_PARTS[key]]
    if ours and len(ours) < len(present):
        theirs = [f"{key}: {config[key]}" for key in present if key not in ours]
        raise ConfigValueError(
            f"config keys {', '.join(f'{key}: {config[key]}' for key in ours)} are MAZero's parts and cannot work "
            f"with {', '.join(theirs)}; use run: mazero, mac: mazero_mac, learner: mazero_learner and agent: mazero "
            f"(or mazero_flat) together, or none of them")


# A capacity and the batch sampled from it, in the same unit: EPyMARL's episodes, MAZero's transitions.
SIZE_PAIRS = (("buffer_size", "batch_size"), ("buffer_transitions", "batch_transitions"))


def check_sizes(config):
    """Raises ConfigValueError when a replay capacity of SIZE_PAIRS is below its batch: no batch could ever be
    sampled, so the run would train nothing."""
    for capacity, batch in SIZE_PAIRS:
        if capacity in config and batch in config and config[capacity] < config[batch]:
            raise ConfigValueError(f"config key {capacity!r} ({config[capacity]}) must be >= {batch} "
                                   f"({config[batch]}): no batch could be sampled, nothing would be trained")


# EPyMARL's batch_size and buffer_size count episodes (QMIX, MAPPO; default.yaml); MAZero's sizes count transitions
# and have their own keys, so a MAZero run refuses the episode keys when its user sets them.
TRANSITION_KEYS = {"batch_size": "batch_transitions", "buffer_size": "buffer_transitions"}


def check_transition_keys(config, given):
    """Raises ConfigValueError when `config` (the merged config) is a `run: mazero` config and `given` (the keys its
    user set, {key: value}: `with` updates, config files, the algorithm YAML) holds batch_size or buffer_size."""
    if config.get("run") != "mazero":
        return
    for key, transitions_key in TRANSITION_KEYS.items():
        if key in given:
            raise ConfigValueError(f"config key {key!r} counts episodes (EPyMARL's QMIX/MAPPO); MAZero counts "
                                   f"transitions: write {transitions_key}={given[key]} instead")


def check_config(config, defaults=None):
    """Raises ConfigValueError for the first key of NUMERIC_KEYS / SETTING_KEYS in `config` whose value breaks its
    rule, for a boolean key of `defaults` (the merged YAML config; `config` itself when None) that holds no bool,
    for registry keys that cannot work together (check_registry_parts), or for a replay smaller than its batch
    (check_sizes)."""
    check_keys(config, list(NUMERIC_KEYS) + list(SETTING_KEYS))
    check_registry_parts(config)
    for key in boolean_keys(config if defaults is None else defaults):
        value, present = _get(config, key)
        problem = BOOLEAN.problem(value) if present else None
        if problem:
            raise ConfigValueError(f"config key {key!r} {problem}, got {value!r}")
    check_sizes(config)
