"""Reanalysis of upcoming batches, in the learner's process or on Ray actors (docs/mazero_scaleout.md).

The run loop's TrainingFeed (learners/mazero_feed.py) samples `reanalyse_prefetch` batches ahead of the one the
learner trains on and submits each, with its own seed, to a `ReanalysisPool`. With `reanalyse_workers: 0` the pool
computes the policy targets at once, in process (Ray is not imported); with N >= 1 it hands them to N Ray actors,
each holding a copy of the target model and its own search trees, which compute them while the learner trains on
batches already done. The batch's seed and the target weights in force at submission fix its targets, so 0 and N
workers give identical targets batch for batch.

The prioritised replay and the gradient steps stay in the learner's process (collection too, unless
`selfplay_workers` moves it to actors: run/mazero_selfplay.py). The target weights go to the object store once per
target-network refresh (one `ray.put`); a worker loads them at its first batch after a refresh. A worker that dies
is restarted and its batches are computed again from the same inputs; a checkpoint drains the batches in flight
(`state_dict`), so a resumed run continues with the same targets.
"""
import copy
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from config_checks import Instance
from mcts.search import MCTSSearch, SearchConfig
from utils.config_record import check_record

SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the workers import our modules from here
REANALYSE_STREAM = 2  # tag of the reanalysis seeds in the run's seed sequence
MAX_ATTEMPTS = 3  # computations of one batch (the first and two restarts) before the run stops
log = logging.getLogger(__name__)


def batch_seed(run_seed, batch_index):
    """The reanalysis seed of the learner's batch_index-th batch (the update that will train on it)."""
    return int(np.random.SeedSequence([run_seed, REANALYSE_STREAM, batch_index]).generate_state(1)[0])


@dataclass(frozen=True)
class ReanalysisConfig:
    """The policy targets of the learner's batches and where they are computed (docs/mazero.md, "Learner";
    docs/mazero_scaleout.md); fields are config keys, except `search`, the reanalysis search's own record."""
    search: SearchConfig  # the reanalysis search: num_simulations = reanalyse_num_simulations unless that is null
    reanalyse_ratio: float  # share of each batch whose policy targets are re-searched with the target network
    policy_loss: str  # "awpo" (advantage-weighted policy targets) or "bc" (visit shares alone)
    awpo_alpha: float  # alpha, temperature of the AWPO weights exp(A / alpha)
    adv_clip: float  # upper clip of the AWPO weights
    awpo_advantage_norm: str  # A~ of exp(A~ / alpha): "batch" (over the batch) or "root" (over each root's children)
    reanalyse_prefetch: int  # batches sampled ahead of the one trained on, reanalysed meanwhile
    reanalyse_workers: int  # Ray actors computing the targets; 0 = in the learner's process
    reanalyse_num_cpus: float  # CPUs reserved per worker (also its torch threads)
    reanalyse_num_gpus: float  # GPUs per worker (fractions share a GPU); > 0 puts its model on the GPU
    ray_address: str | None  # None (null) = start a local Ray; "auto" or "host:port" = join a running Ray cluster
    seed: int  # the run's seed: each batch's reanalysis seed derives from it (batch_seed)

    def __post_init__(self):
        check_record(self, search=Instance(SearchConfig))


def reanalyse_with_seed(reanalyse, batch, seed, model, search, config):
    """`reanalyse(batch, model, search, config)` with the search's random streams started from `seed`."""
    search.reseed(seed)
    with torch.no_grad():
        return reanalyse(batch, model, search, config)


@dataclass
class PendingBatch:
    """A submitted batch: its targets (in process) or the Ray reference of the worker computing them."""
    batch: object  # MAZeroBatch, on the CPU
    seed: int
    published_weights: tuple  # (version, [ObjectRef]) of the target weights in force at submission; () in process
    result: object  # PolicyTargets, or an ObjectRef of them
    worker: int  # index of the worker computing it; -1 in process
    attempts: int = 1


class ReanalysisWorker:
    """Body of a Ray actor: a copy of the target model, its own search, and the policy-target function."""

    def __init__(self, model, config, reanalyse, device, threads):
        torch.set_num_threads(threads)
        self.model = model.to(device).eval()
        self.search = MCTSSearch(config.search, seed=0)  # reseeded per batch
        self.config = config
        self.reanalyse = reanalyse
        self.version = None

    def pid(self):
        return os.getpid()

    def reanalyse_batch(self, version, weight_refs, batch, seed):
        import ray

        if version != self.version:  # the first batch after a target-network refresh
            self.model.load_state_dict(ray.get(weight_refs[0]))
            self.version = version
        return reanalyse_with_seed(self.reanalyse, batch, seed, self.model, self.search, self.config)


def import_ray(key, value):
    """Ray, for the workers that config key `key` (set to `value`) asks for; a clear exit when it is not
    installed."""
    try:
        import ray
    except ImportError:
        raise SystemExit(f"ERROR: {key}={value} needs Ray, which is not installed: "
                         f"pip install -r requirements.txt (or set {key}=0)") from None
    return ray


def unreachable(address):
    """Why nothing answers at a "host:port" address (ray.init would retry it for minutes), or None."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():  # "auto", or a form Ray resolves itself
        return None
    try:
        socket.create_connection((host.split("://")[-1], int(port)), timeout=10).close()
    except OSError as exc:
        return str(exc)
    return None


def start_ray(ray, ray_address):
    """Starts a local Ray (ray_address None) or joins the cluster at ray_address, unless Ray is running already in
    this process; exits with a message when the cluster cannot be reached."""
    if ray.is_initialized():
        return
    if ray_address is None:  # a local Ray, whose workers import our modules from src/
        runtime_env = {"env_vars": {"PYTHONPATH": SRC_DIR}}
    else:  # a cluster's nodes get src/ uploaded as the job's working directory
        runtime_env = {"working_dir": SRC_DIR, "excludes": ["__pycache__"]}
    error = unreachable(str(ray_address)) if ray_address is not None else None
    if error is None:
        try:
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            error = str(exc)
    if error is not None:
        raise SystemExit(f"ERROR: cannot reach the Ray cluster at ray_address={ray_address!r} "
                         f"(null starts a local Ray, 'auto' joins the one on this machine): {error}")


def connect_ray(ray, config, selfplay_workers=0):
    """start_ray at config.ray_address (config: ReanalysisConfig); exits with a message when the cluster lacks the
    resources of the reanalysis workers and of `selfplay_workers` self-play actors (1 CPU each)."""
    start_ray(ray, config.ray_address)
    total = ray.cluster_resources()
    workers = config.reanalyse_workers
    for key, per_worker in (("CPU", config.reanalyse_num_cpus), ("GPU", config.reanalyse_num_gpus)):
        needed = workers * per_worker
        if needed > total.get(key, 0.0) + 1e-9:
            raise SystemExit(f"ERROR: reanalyse_workers={workers} x reanalyse_num_{key.lower()}s="
                             f"{per_worker} needs {needed:g} {key}s, the Ray cluster has {total.get(key, 0.0):g}: "
                             f"use fewer workers or a smaller reanalyse_num_{key.lower()}s")
    needed = workers * config.reanalyse_num_cpus + selfplay_workers
    if selfplay_workers and needed > total.get("CPU", 0.0) + 1e-9:
        raise SystemExit(f"ERROR: selfplay_workers={selfplay_workers} (1 CPU each) and reanalyse_workers="
                         f"{workers} x reanalyse_num_cpus={config.reanalyse_num_cpus} need {needed:g} "
                         f"CPUs, the Ray cluster has {total.get('CPU', 0.0):g}: use fewer workers")


class ReanalysisPool:
    """Policy targets of the learner's upcoming batches, computed in order of submission (see module docstring).

    config: ReanalysisConfig; reanalyse(batch, target_model, search, config) -> PolicyTargets is the learner's pure
    reanalysis function; `search` is the learner's search driver, used in process.
    """

    def __init__(self, config, target_model, search, reanalyse):
        self.config = config
        self.reanalyse = reanalyse
        self.search = search
        self.queue = deque()
        self.seconds = 0.0  # the learner's wall-clock in reanalysis: computing it (in process) or waiting for it
        self.restarts = 0  # workers restarted after they died
        self.workers = []
        self.ray = None
        self.version = 0
        self.published_weights = ()
        self.target_model = target_model
        self.run_seed = config.seed  # saved: a resumed run keeps the seeds of the run it continues
        if config.reanalyse_workers > 0:
            self.ray = import_ray("reanalyse_workers", config.reanalyse_workers)
            connect_ray(self.ray, config)
            self.refresh(target_model)
            self.workers = [self._new_worker() for _ in range(config.reanalyse_workers)]
            log.info(f"{len(self.workers)} reanalysis workers on Ray, pids {self.worker_pids()}")

    def __len__(self):
        return len(self.queue)

    def refresh(self, target_model):
        """After a target-network refresh: batches submitted from now on are reanalysed with these weights."""
        self.target_model = target_model
        if self.ray is not None:
            self.version += 1
            state = {key: value.cpu() for key, value in target_model.state_dict().items()}
            # in a list: workers fetch it once, not per call
            self.published_weights = (self.version, [self.ray.put(state)])

    def submit(self, batch, batch_index):
        """Reanalyses `batch`, the batch the learner's update number `batch_index` will train on."""
        seed = batch_seed(self.run_seed, batch_index)
        item = PendingBatch(batch=batch, seed=seed, published_weights=self.published_weights, result=None, worker=-1)
        if self.workers:
            item.worker = (self.queue[-1].worker + 1) % len(self.workers) if self.queue else 0
            item.result = self._remote(item)
        else:
            start = time.perf_counter()
            item.result = reanalyse_with_seed(self.reanalyse, batch, seed, self.target_model, self.search,
                                              self.config)
            self.seconds += time.perf_counter() - start
        self.queue.append(item)

    def next(self):
        """The oldest submitted batch and its PolicyTargets (waiting for its worker if need be)."""
        item = self.queue.popleft()
        if self.workers:
            start = time.perf_counter()
            item.result = self._fetch(item)
            self.seconds += time.perf_counter() - start
        return item.batch, item.result

    def worker_pids(self):
        return self.ray.get([worker.pid.remote() for worker in self.workers]) if self.workers else []

    def state_dict(self):
        """The batches in flight with their targets (waits for the workers): a checkpoint drains the queue."""
        for item in self.queue:
            if self.workers:
                item.result = self._fetch(item)
        return {"run_seed": self.run_seed,
                "pending": [{"batch": item.batch, "seed": item.seed, "targets": item.result} for item in self.queue]}

    def load_state_dict(self, state):
        self.run_seed = state["run_seed"]
        self.queue = deque(PendingBatch(batch=item["batch"], seed=item["seed"], published_weights=(),
                                        result=item["targets"], worker=-1) for item in state["pending"])

    def close(self):
        for worker in self.workers:
            self.ray.kill(worker)
        self.workers = []

    # --- Ray ---------------------------------------------------------------------------------------------------
    def _new_worker(self):
        config = self.config
        actor = self.ray.remote(ReanalysisWorker).options(num_cpus=config.reanalyse_num_cpus,
                                                          num_gpus=config.reanalyse_num_gpus)
        device = "cuda" if config.reanalyse_num_gpus > 0 else "cpu"
        model = copy.deepcopy(self.target_model).cpu()
        return actor.remote(model, config, self.reanalyse, device, max(1, int(config.reanalyse_num_cpus)))

    def _remote(self, item):
        version, weight_refs = item.published_weights
        return self.workers[item.worker].reanalyse_batch.remote(version, weight_refs, item.batch, item.seed)

    def _fetch(self, item):
        """The worker's result; if the worker died, restart it and compute its batches again."""
        if not isinstance(item.result, self.ray.ObjectRef):
            return item.result
        while True:
            try:
                return self.ray.get(item.result)
            except self.ray.exceptions.RayActorError as exc:
                if item.attempts >= MAX_ATTEMPTS:
                    raise RuntimeError(f"reanalysis worker {item.worker} died {item.attempts} times on the same "
                                       f"batch; last error: {exc}") from exc
                self._restart(item, exc)

    def _restart(self, failed, exc):
        index = failed.worker
        log.warning(f"reanalysis worker {index} died ({type(exc).__name__}); restarting it and recomputing its "
                    f"batches")
        self.workers[index] = self._new_worker()
        self.restarts += 1
        for item in (failed, *self.queue):
            if item.worker == index and isinstance(item.result, self.ray.ObjectRef):
                item.attempts += 1
                item.result = self._remote(item)
