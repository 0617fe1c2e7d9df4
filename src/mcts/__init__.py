"""MAZero's batched search tree: `SampledTrees` from the compiled `mcts.ctree`, or from the pure-Python twin
`mcts.ptree` (same API and results, far slower) with a warning when the extension has not been built.

Both modules stay importable by name for tests and benchmarks; `ctree` is None when the extension is missing.
"""
import importlib
import warnings

from mcts import ptree

try:
    ctree = importlib.import_module("mcts.ctree")
except ImportError as _exc:
    ctree = None
    warnings.warn(
        f"mcts.ctree is not built ({_exc}); using the pure-Python mcts.ptree, which is 50-100x slower. "
        "Build the extension with `pip install -e .` or `python setup.py build_ext --inplace`.",
        RuntimeWarning,
        stacklevel=2,
    )
    SampledTrees = ptree.SampledTrees
else:
    SampledTrees = ctree.SampledTrees

__all__ = ["SampledTrees", "ctree", "ptree"]
