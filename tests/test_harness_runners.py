"""Runners and vector envs: step alignment, time-outs, extra scheme fields, t_env accounting, spawn workers."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import envs
from controllers import REGISTRY as mac_REGISTRY
from envs.matrix_game import MatrixGame
from envs.multiagentenv import MultiAgentEnv
from envs.vec_env import InProcessVecEnv, SubprocVecEnv
from helpers.harness_helpers import REPO_ROOT, make_args
from run.common import add_env_info, build_scheme
from runners import REGISTRY as runner_REGISTRY

torch.set_num_threads(1)


class CountdownEnv(MultiAgentEnv):
    """Two agents; the episode ends after `length` steps, as a time-out or as a real terminal."""

    def __init__(self, length=3, timeout=True, seed=None):
        self.n_agents, self.length, self.timeout, self.episode_limit = 2, length, timeout, length
        self.t = 0
        self.seed_value = seed

    def reset(self):
        self.t = 0

    def step(self, actions):
        self.t += 1
        done = self.t >= self.length
        info = {"episode_limit": True} if (done and self.timeout) else {}
        if done:
            info["reached_end"] = 1
        return float(self.t), done, info

    def get_obs(self):
        return [np.full(2, self.t, dtype=np.float32) for _ in range(self.n_agents)]

    def get_obs_size(self):
        return 2

    def get_state(self):
        return np.array([self.t], dtype=np.float32)

    def get_state_size(self):
        return 1

    def get_avail_actions(self):
        return [[1, 1] for _ in range(self.n_agents)]

    def get_total_actions(self):
        return 2

    def seed(self, seed=None):
        if seed is None:
            return self.seed_value
        self.seed_value = seed


class RecordingLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t, to_sacred=True):
        self.stats.setdefault(key, []).append((t, float(value)))


@pytest.fixture
def countdown_registered(monkeypatch):
    monkeypatch.setitem(envs.REGISTRY, "countdown", CountdownEnv)


class InProcessParallelRunner(runner_REGISTRY["parallel"]):
    """The parallel runner over in-process envs, so test-only envs need no worker process."""

    def make_env(self):
        return envs.make_vec_env(self.args.env, self.args.env_args, self.num_envs, 0, in_process=True)


def build_runner(args, mac_name="basic_mac", runner_cls=None):
    logger = RecordingLogger()
    runner = (runner_cls or runner_REGISTRY[args.runner])(args=args, logger=logger)
    env_info = runner.get_env_info()
    add_env_info(args, env_info)
    mac_cls = mac_REGISTRY[mac_name] if isinstance(mac_name, str) else mac_name
    scheme, groups, preprocess = build_scheme(args, env_info, mac_cls)
    from components.episode_buffer import ReplayBuffer

    buffer = ReplayBuffer(scheme, groups, 8, env_info["episode_limit"] + 1, preprocess=preprocess)
    mac = mac_cls(buffer.scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    return runner, logger


@pytest.mark.parametrize("timeout, stored_terminal", [(True, 0), (False, 1)])
def test_episode_alignment_and_time_outs(countdown_registered, timeout, stored_terminal):
    args = make_args("qmix", "matrix", env="countdown", env_args={"length": 3, "timeout": timeout, "seed": 0},
                     runner_log_interval=1)
    runner, logger = build_runner(args)
    batch = runner.run()
    assert batch.batch_size == 1 and batch.max_seq_length == 4
    assert batch["filled"][0, :, 0].tolist() == [1, 1, 1, 1]  # 3 transitions + the final observation
    assert batch["obs"][0, :, 0, 0].tolist() == [0, 1, 2, 3]
    assert batch["reward"][0, :3, 0].tolist() == [1, 2, 3]
    assert batch["terminated"][0, :, 0].tolist() == [0, 0, stored_terminal, 0]
    assert runner.t_env == 3
    runner.run(test_mode=True)
    assert runner.t_env == 3  # test episodes do not count
    assert logger.stats["return_mean"] == [(3, 6.0)]
    assert logger.stats["reached_end_mean"] == [(3, 1.0)]
    assert logger.stats["ep_length_mean"] == [(3, 3.0)]
    assert "epsilon" in logger.stats


def test_episode_that_outlives_its_limit_is_an_error(countdown_registered):
    class LyingEnv(CountdownEnv):
        def get_env_info(self):
            return dict(super().get_env_info(), episode_limit=2)

    envs.REGISTRY["countdown"] = LyingEnv
    runner, _ = build_runner(make_args("qmix", "matrix", env="countdown", env_args={"length": 3, "seed": 0}))
    with pytest.raises(RuntimeError, match="episode_limit"):
        runner.run()


class ExtrasMAC(mac_REGISTRY["basic_mac"]):
    """A controller that adds a field through extra_scheme and returns (actions, extras)."""

    @staticmethod
    def extra_scheme(args):
        return {"behaviour_probs": {"vshape": (args.n_actions,), "group": "agents"}}

    def select_actions(self, ep_batch, t_ep, t_env, bs=slice(None), test_mode=False):
        actions = super().select_actions(ep_batch, t_ep, t_env, bs, test_mode)
        probs = torch.full((len(actions), self.n_agents, self.args.n_actions), float(t_ep + 1))
        return actions, {"behaviour_probs": probs}


def test_controller_extra_scheme_fields_are_stored(countdown_registered):
    args = make_args("qmix", "matrix", runner="parallel", batch_size_run=2, env="countdown",
                     env_args={"length": 2, "seed": 0})
    args.n_agents, args.n_actions = 2, 2
    scheme, _, _ = build_scheme(args, {"state_shape": 1, "obs_shape": 2, "n_actions": 2, "n_agents": 2,
                                       "episode_limit": 2}, ExtrasMAC)
    assert "behaviour_probs" in scheme
    runner, _ = build_runner(args, ExtrasMAC, InProcessParallelRunner)
    try:
        batch = runner.run()
        assert batch["behaviour_probs"].shape == (2, 3, 2, 2)
        assert batch["behaviour_probs"][:, :, 0, 0].tolist() == [[1.0, 2.0, 3.0]] * 2
    finally:
        runner.close_env()


class SeedLengthEnv(CountdownEnv):
    """Episode length 2 + seed: envs of one parallel batch end at different steps."""

    def __init__(self, seed=0):
        super().__init__(length=2 + seed, timeout=False, seed=seed)
        self.episode_limit = 3  # the longest episode of the batch


def test_parallel_batch_with_uneven_episode_lengths(monkeypatch):
    monkeypatch.setitem(envs.REGISTRY, "uneven", SeedLengthEnv)
    args = make_args("qmix", "matrix", runner="parallel", batch_size_run=2, env="uneven", env_args={"seed": 0},
                     runner_log_interval=1)
    runner, logger = build_runner(args, "basic_mac", InProcessParallelRunner)
    batch = runner.run()
    assert batch["filled"][:, :, 0].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["terminated"][:, :, 0].tolist() == [[0, 1, 0, 0], [0, 0, 1, 0]]
    assert batch["reward"][:, :, 0].tolist() == [[1, 2, 0, 0], [1, 2, 3, 0]]
    assert runner.t_env == 5
    assert logger.stats["ep_length_mean"] == [(5, 2.5)] and logger.stats["return_mean"] == [(5, 4.5)]


def test_extra_scheme_may_not_redefine_base_fields():
    class BadMAC:
        @staticmethod
        def extra_scheme(args):
            return {"obs": {"vshape": 3}}

    args = make_args("qmix", "matrix")
    args.n_agents, args.n_actions = 2, 3
    with pytest.raises(ValueError, match="redefines"):
        build_scheme(args, {"state_shape": 1, "obs_shape": 1, "n_actions": 3, "n_agents": 2}, BadMAC)


def test_make_vec_env_seeds_env_i_with_seed_plus_i():
    vec = envs.make_vec_env("matrix", {"game": "penalty", "seed": None}, num_envs=3, seed=10, in_process=True)
    assert isinstance(vec, InProcessVecEnv)
    assert [env.seed() for env in vec.envs] == [10, 11, 12]
    with pytest.raises(ValueError, match="registered envs"):
        envs.make_vec_env("nope", {}, 1, 0)


@pytest.mark.subprocess
def test_subproc_vec_env_matches_single_envs():
    vec = SubprocVecEnv("matrix", {"game": "climbing", "penalty": -100}, num_envs=3, seed=0)
    try:
        info = vec.get_env_info()
        assert info == MatrixGame().get_env_info()
        vec.reset()
        assert vec.get_obs().shape == (3, 2, 1) and vec.get_state().shape == (3, 1)
        assert vec.get_avail_actions().shape == (3, 2, 3)
        actions = np.array([[0, 0], [0, 1], [2, 2]])
        rewards, terminated, infos = vec.step(actions, np.array([True, True, False]))
        assert rewards.tolist() == [11.0, -30.0, 0.0]
        assert terminated.tolist() == [True, True, False] and infos == [{}, {}, {}]
        assert len(vec.get_stats()["env_stats"]) == 3
    finally:
        vec.close()
    assert not any(p.is_alive() for p in vec.processes)


@pytest.mark.subprocess
def test_subproc_vec_env_reports_worker_errors():
    with pytest.raises(ValueError, match="Unknown matrix game"):
        SubprocVecEnv("matrix", {"game": "nope"}, num_envs=2, seed=0)


@pytest.mark.subprocess
def test_parallel_runner_with_subprocess_workers_counts_all_envs():
    args = make_args("qmix", "matrix", runner="parallel", batch_size_run=3, runner_log_interval=1)
    runner, logger = build_runner(args)
    try:
        assert isinstance(runner.env, SubprocVecEnv)
        batch = runner.run()
        assert batch.batch_size == 3 and batch["filled"][:, :, 0].tolist() == [[1, 1]] * 3
        assert runner.t_env == 3
        runner.run()
        assert runner.t_env == 6
        for _ in range(-(-args.test_nepisode // 3)):  # 8 episodes: three batches of 3, the last counting 2
            runner.run(test_mode=True)
        assert [t for t, _ in logger.stats["test_return_mean"]] == [6]
    finally:
        runner.close_env()


class SeedRewardEnv(CountdownEnv):
    """One-step episodes whose reward is the env's seed: env i of a batch returns i."""

    def __init__(self, seed=0):
        super().__init__(length=1, timeout=False, seed=seed)

    def step(self, actions):
        _, done, info = super().step(actions)
        return float(self.seed_value), done, info


def test_test_episodes_are_counted_exactly_when_test_nepisode_is_no_multiple_of_the_envs(monkeypatch):
    # config.json records test_nepisode as given: 4 episodes over 3 envs are one batch of 3 and one of the first 1
    monkeypatch.setitem(envs.REGISTRY, "seed_reward", SeedRewardEnv)
    args = make_args("qmix", "matrix", runner="parallel", batch_size_run=3, test_nepisode=4, env="seed_reward",
                     env_args={"seed": 0})
    runner, logger = build_runner(args, "basic_mac", InProcessParallelRunner)
    runner.run(test_mode=True)
    assert "test_return_mean" not in logger.stats
    runner.run(test_mode=True)
    assert [value for _, value in logger.stats["test_return_mean"]] == [(0 + 1 + 2 + 0) / 4]
    assert [value for _, value in logger.stats["test_ep_length_mean"]] == [1.0]


@pytest.mark.subprocess
def test_importing_the_harness_does_not_import_jax_or_smac():
    code = ("import sys; sys.path.insert(0, 'src'); import envs, runners, run, controllers, learners; "
            "print(sorted(m for m in ('jax', 'jaxmarl', 'smac') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
