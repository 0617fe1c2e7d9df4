"""Self-play for the `mazero` run loop: the controller that collects episodes, the episodes in the replay's form,
and, with `selfplay_workers: N >= 1`, N Ray actors that collect beside the learner (docs/mazero_scaleout.md,
"Pipelined run").

Each actor holds its own envs (a runner of `batch_size_run` envs), controller and copy of the online model, and
collects one runner batch per request: the request carries the weights (a version number and an object-store
reference, fetched once per version) and whether the learner has started, so an actor acts with the weights that
were current when its batch was asked for (they are refreshed every `selfplay_refresh` updates). The loop keeps
exactly one request in flight per actor: the actors run at most one batch each ahead of the learner, and the
learner trains up to `updates_per_env_step` x the env steps stored, so the replay ratio is the configured one on any
machine. An actor that dies is replaced (with fresh seeds) and its batch is asked of the new one.
"""
import copy
import logging
import os

import numpy as np
import torch

from learners.mazero_reanalyse import connect_ray, import_ray
from mcts.search import SearchStats
from run.common import env_scheme

SELFPLAY_STREAM = 3  # tag of the self-play actors' seeds in the run's seed sequence (reanalysis uses 2)
ENV_SEED_RANGE = 2 ** 31 - 2 ** 16  # env i of a runner is seeded with seed + i: keep that inside an int32
MAX_RESTARTS_IN_A_ROW = 3  # replacements of one actor without a batch delivered before the run stops
log = logging.getLogger(__name__)


def build_mac(args, runner):
    """The controller for `runner`'s envs (args.mac, built by the harness's registry from the run's `args`), set up
    in the runner; it must store the search statistics."""
    _, mac_cls, (scheme, groups, preprocess) = env_scheme(args, runner)
    missing = [field for field in SearchStats.scheme(args.sampled_actions, args.n_agents) if field not in scheme]
    if missing:
        raise ValueError(f"run 'mazero' needs a controller that stores the search statistics {missing} "
                         f"(mac: mazero_mac), got mac {args.mac!r}")
    mac = mac_cls(scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    return mac, scheme


def episode_records(episode_batch, mac):
    """The episodes of a runner batch as MAZeroReplayBuffer.add_episode's arguments, one tuple per episode."""
    inputs = mac.build_inputs(episode_batch, slice(None))  # [B, T_max + 1, N, D]
    lengths = episode_batch["filled"][:, :, 0].sum(1) - 1  # filled rows = transitions + the final observation
    actions = episode_batch["actions"][..., 0]
    avail_actions = episode_batch["avail_actions"].bool()
    rewards = episode_batch["reward"][..., 0]
    terminated = episode_batch["terminated"][..., 0]
    return [(inputs[b, :T + 1], actions[b, :T], avail_actions[b, :T + 1], rewards[b, :T], bool(terminated[b, T - 1]),
             SearchStats.from_episode_batch(episode_batch, (b, slice(0, T))))
            for b, T in enumerate(lengths.tolist())]


def actor_seed(run_seed, start_t_env, actor_index, replacements):
    """The seed of actor `actor_index`'s envs, action sampler and search: a run's start, each of its resumes (another
    t_env) and each replacement of a dead actor play other episodes."""
    entropy = [run_seed, SELFPLAY_STREAM, start_t_env, actor_index, replacements]
    state = np.random.SeedSequence(entropy).generate_state(1)[0]
    return int(state) % ENV_SEED_RANGE


class StatsRecorder:
    """Stands in for the Logger in an actor: keeps the runner's training statistics for the learner's logger."""

    def __init__(self):
        self.console_logger = log
        self.stats = []

    def log_stat(self, key, value, t):
        self.stats.append((key, float(value)))

    def info(self, message):
        log.info(message)

    def take(self):
        stats, self.stats = self.stats, []
        return stats


class SelfPlayWorker:
    """Body of a self-play Ray actor: its own runner, controller and model copy on the CPU, one torch thread.
    `runner_args`: the run's args, which the harness's registries build the runner and the controller from."""

    def __init__(self, runner_args, seed):
        from runners import REGISTRY as runner_REGISTRY

        torch.set_num_threads(1)
        args = copy.copy(runner_args)
        args.seed, args.env_args = seed, dict(args.env_args, seed=seed)
        args.use_cuda, args.device = False, "cpu"
        self.recorder = StatsRecorder()
        self.runner = runner_REGISTRY[args.runner](args=args, logger=self.recorder)
        self.mac, _ = build_mac(args, self.runner)
        self.version = None

    def pid(self):
        return os.getpid()

    def collect(self, version, weight_refs, training_started):
        """One runner batch of training episodes: (episode_records, the runner's statistics, search seconds)."""
        import ray

        if version != self.version:
            self.mac.agent.load_state_dict(ray.get(weight_refs[0]))
            self.version = version
        self.mac.set_training_started(training_started)
        searched = self.mac.time_spent()["selfplay_search"]
        batch = self.runner.run(test_mode=False)
        return (episode_records(batch, self.mac), self.recorder.take(),
                self.mac.time_spent()["selfplay_search"] - searched)


class SelfPlayActors:
    """`selfplay_workers` self-play actors on Ray, one collection request in flight per actor.

    runner_args: the run's args, for the actors' runners and controllers (SelfPlayWorker); config: LoopConfig;
    reanalysis: ReanalysisConfig (the Ray cluster to join, and the CPUs its workers take)."""

    def __init__(self, runner_args, config, reanalysis, start_t_env):
        self.runner_args, self.config = runner_args, config
        self.ray = import_ray("selfplay_workers", config.selfplay_workers)
        connect_ray(self.ray, reanalysis, config.selfplay_workers)
        self.start_t_env = start_t_env
        self.replacements = [0] * config.selfplay_workers
        self.failures = [0] * config.selfplay_workers  # deaths of each actor since it last delivered a batch
        self.workers = [self._new_worker(index) for index in range(config.selfplay_workers)]
        self.pending = {}  # ObjectRef -> actor index
        self.version = 0
        self.weight_refs = None  # [ObjectRef] of the weights of `version` in the object store
        self.search_seconds = 0.0  # the actors' self-play search, summed over them (logged: are they busy?)
        log.info(f"{len(self.workers)} self-play actors on Ray, pids {self.worker_pids()}")

    @property
    def restarts(self):
        """Actors replaced after they died."""
        return sum(self.replacements)

    def worker_pids(self):
        return self.ray.get([worker.pid.remote() for worker in self.workers])

    def refresh(self, model):
        """Requests from now on carry these weights (one ray.put; an actor loads them at its next request)."""
        self.version += 1
        state = {key: value.cpu() for key, value in model.state_dict().items()}
        self.weight_refs = [self.ray.put(state)]  # in a list: the actor fetches it once, not per call

    def request_all(self, training_started):
        """Asks every actor without a request in flight for a batch."""
        busy = set(self.pending.values())
        for index in range(len(self.workers)):
            if index not in busy:
                self._request(index, training_started)

    def next_batch(self, training_started):
        """The first batch any actor finishes: (episode records, runner statistics); that actor is asked for its
        next batch at once, with the current weights. A dead actor is replaced and asked again."""
        while True:
            (ready,), _ = self.ray.wait(list(self.pending), num_returns=1)
            index = self.pending.pop(ready)
            try:
                episodes, stats, seconds = self.ray.get(ready)
            except self.ray.exceptions.RayActorError as exc:
                self._replace(index, exc)
                self._request(index, training_started)
                continue
            self.failures[index] = 0
            self.search_seconds += seconds
            self._request(index, training_started)
            return episodes, stats

    def in_flight_episodes(self):
        """Episodes being collected now (a checkpoint does not hold them)."""
        return len(self.pending) * self.config.batch_size_run

    def close(self):
        for worker in self.workers:
            self.ray.kill(worker)
        self.workers, self.pending = [], {}

    def _request(self, index, training_started):
        ref = self.workers[index].collect.remote(self.version, self.weight_refs, training_started)
        self.pending[ref] = index

    def _new_worker(self, index):
        seed = actor_seed(self.config.seed, self.start_t_env, index, self.replacements[index])
        return self.ray.remote(SelfPlayWorker).options(num_cpus=1).remote(self.runner_args, seed)

    def _replace(self, index, exc):
        self.failures[index] += 1
        if self.failures[index] >= MAX_RESTARTS_IN_A_ROW:
            raise RuntimeError(f"self-play actor {index} died {self.failures[index]} times in a row; last error: "
                               f"{exc}") from exc
        log.warning(f"self-play actor {index} died ({type(exc).__name__}); replacing it and asking the new one "
                    f"for its batch")
        self.replacements[index] += 1
        self.workers[index] = self._new_worker(index)
