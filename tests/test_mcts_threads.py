"""One SampledTrees object used from two Python threads at once raises RuntimeError; it never crashes (ctree releases
the GIL inside select/expand, and two threads growing the same arena corrupted the heap: exit 139)."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import mcts
from helpers.harness_helpers import REPO_ROOT
from mcts import ptree

MODULES = {"ctree": mcts.ctree, "ptree": ptree}
B, N, A, SAMPLED_ACTIONS, S = 4, 3, 5, 4, 6


class BlockingArray:
    """An array-like whose conversion waits until released, so a thread stays inside prepare() as long as needed."""

    def __init__(self, array):
        self.array = array
        self.entered = threading.Event()
        self.release = threading.Event()

    def __array__(self, dtype=None, copy=None):
        self.entered.set()
        assert self.release.wait(timeout=30)
        return self.array if dtype is None else self.array.astype(dtype)


def root_inputs():
    probs = np.full((B, N, A), 1.0 / A, dtype=np.float32)
    return np.zeros(B, dtype=np.float32), probs, np.ones((B, N, A), dtype=bool)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_call_while_another_thread_is_inside_raises_and_the_object_stays_usable(name):
    trees = MODULES[name].SampledTrees(B, N, A, SAMPLED_ACTIONS, S, os_rho=0.25, os_lambda=0.8, gamma=0.99)
    values, probs, avail_actions = root_inputs()
    blocking = BlockingArray(values)
    finished = []
    inside = threading.Thread(
        target=lambda: finished.append(trees.prepare(blocking, probs, avail_actions, None, 0.0)))
    inside.start()
    try:
        assert blocking.entered.wait(timeout=30)
        for call in (trees.select, trees.reset, trees.root_values,
                     lambda: trees.prepare(values, probs, avail_actions, None, 0.0)):
            with pytest.raises(RuntimeError, match=r"inside SampledTrees\.prepare\(\) of the same object; a "
                                                   r"SampledTrees object serves one thread at a time"):
                call()
    finally:
        blocking.release.set()
        inside.join()
    assert finished == [None]  # the first thread's prepare() completed
    for _ in range(S):  # and the object works normally afterwards
        trees.select()
        trees.expand(values, values, probs)
    assert trees.root_children()["visits"].sum() == B * S


HAMMER = """
import sys, threading
import numpy as np
from mcts import {name} as module
B, N, A, SAMPLED_ACTIONS, S = 32, 5, 11, 10, 40
trees = module.SampledTrees(B, N, A, SAMPLED_ACTIONS, S, os_rho=0.25, os_lambda=0.8, gamma=0.99)
refused, other = [], []

def worker(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([1.0] * A, size=(B, N)).astype(np.float32)
    for _ in range({rounds}):
        try:
            trees.prepare(rng.normal(size=B).astype(np.float32), probs, np.ones((B, N, A), bool), None, 0.0)
            for _ in range(S):
                trees.select()
                trees.expand(rng.normal(size=B).astype(np.float32), rng.normal(size=B).astype(np.float32), probs)
        except RuntimeError as exc:
            refused.append(str(exc))
        except Exception as exc:
            # "select() called twice ..." when the other thread began a search between two of this one's calls
            if not (isinstance(exc, ValueError) and " called " in str(exc)):
                other.append(repr(exc))

threads = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(refused), other)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("name, rounds", [("ctree", 20), ("ptree", 2)])
def test_two_threads_searching_one_object_get_errors_not_a_crash(name, rounds):
    proc = subprocess.run([sys.executable, "-c", HAMMER.format(name=name, rounds=rounds)], cwd=REPO_ROOT,
                          env=dict(os.environ, PYTHONPATH=os.path.join(REPO_ROOT, "src")), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    # How often the two threads overlap depends on scheduling (on a loaded machine they may not overlap at all):
    # the raise itself is checked deterministically above; here no crash and no other error may occur.
    _, other = proc.stdout.split(" ", 1)
    assert other.strip() == "[]"
