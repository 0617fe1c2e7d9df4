"""Typed config records built from the run's config namespace (issue 26: one meaning per name).

A part of MAZero (the search, the world model, ...) takes a small `@dataclass(frozen=True)` record instead of the
whole `args` namespace. Each record's field names are the config keys of src/config/algs/*.yaml, so a name means
the same thing in the YAML, in the record and in the code that reads it: `record_from_config` fills a record from
the namespace by those names, and `check_record` (called from a record's `__post_init__`) checks each field by the
rule config_checks holds for that key.
"""
import dataclasses

from config_checks import NUMERIC_KEYS, SETTING_KEYS, Bool, ConfigValueError


def record_from_config(cls, config, **overrides):
    """An instance of the dataclass `cls` whose fields are read by name from `config` (`getattr(config, name)`).

    `overrides` replace values by field name (e.g. `num_simulations=reanalyse_num_simulations` for the
    reanalysis search). A field that `config` lacks and no override gives raises AttributeError naming the key;
    an override that names no field raises TypeError. The record's own `__post_init__` validates the values.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
    values = {}
    for name in names:
        if name in overrides:
            values[name] = overrides[name]
        elif hasattr(config, name):
            values[name] = getattr(config, name)
        else:
            raise AttributeError(f"{cls.__name__}: the config has no key {name!r}")
    return cls(**values)


def check_record(record, **rules):
    """Raises ConfigValueError (a ValueError) naming the first field of `record` whose value breaks its rule.

    A field's rule is the one given in `rules` (a config_checks rule: Int, Real, OneOf, ...), else config_checks's
    rule for the config key of that name (NUMERIC_KEYS, SETTING_KEYS), else Bool() for a field annotated `bool`;
    a field with none of these is a programming error (TypeError), so every field of a record is checked.
    """
    for field in dataclasses.fields(record):
        rule = rules.get(field.name) or NUMERIC_KEYS.get(field.name) or SETTING_KEYS.get(field.name)
        if rule is None and field.type is bool:
            rule = Bool()
        if rule is None:
            raise TypeError(f"{type(record).__name__}.{field.name} has no check: give check_record a rule for it")
        value = getattr(record, field.name)
        problem = rule.problem(value)
        if problem:
            raise ConfigValueError(f"{type(record).__name__}: config key {field.name!r} {problem}, got {value!r}")
