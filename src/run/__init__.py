"""Run-loop registry (key `run`, pymarl2 style): REGISTRY[name](_run, config, _log) trains and evaluates.

An algorithm whose collect/train cycle differs from EPyMARL's registers its own loop here and reuses run.common.
"""
from run.default_run import run as default_run
from run.mazero_run import run as mazero_run

REGISTRY = {
    "default": default_run,
    "mazero": mazero_run,
}
