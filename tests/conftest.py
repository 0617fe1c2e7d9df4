import os
import sys

import pytest
import torch

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def forget_package(name):
    """Drops package `name` and its submodules from sys.modules, so the next import looks for it on the path again."""
    for module in [module for module in sys.modules if module == name or module.startswith(name + ".")]:
        del sys.modules[module]


@pytest.fixture
def fake_package(monkeypatch):
    """fake_package(name, folder): the package `name` in `folder` (tests/fake_smac, ...) for the rest of the test."""
    installed = []

    def install(name, folder):
        forget_package(name)
        monkeypatch.syspath_prepend(folder)
        installed.append(name)

    yield install
    for name in installed:
        forget_package(name)


@pytest.fixture
def missing_package(monkeypatch):
    """missing_package(name): `import name` raises ImportError for the rest of the test."""
    def remove(name):
        forget_package(name)
        monkeypatch.setitem(sys.modules, name, None)

    return remove


@pytest.fixture
def deterministic_torch():
    """torch.use_deterministic_algorithms for the test (bitwise comparisons of runs)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.fixture(scope="module")
def local_ray():
    """A local two-CPU Ray for a test module (the workers import our modules from src/); shut down after it."""
    import ray

    for attempt in range(2):  # Ray gives its node 30 s to start, which a loaded machine can exceed once
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": SRC}})
            break
        except Exception:
            ray.shutdown()
            if attempt:
                raise
    yield ray
    ray.shutdown()
