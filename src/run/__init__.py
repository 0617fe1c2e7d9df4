"""Run-loop registry (key `run`, pymarl2 style): REGISTRY[name](_run, config, _log) trains and evaluates.

Each entry is run.common.run bound to a loop class that supplies its algorithm's collect and train steps; the
cycle around them (test, log and checkpoint timing, progress) is run.common.train_sequential.
"""
from functools import partial

from run.common import run
from run.default_run import DefaultLoop
from run.mazero_run import MAZeroLoop

REGISTRY = {
    "default": partial(run, DefaultLoop),
    "mazero": partial(run, MAZeroLoop),
}
