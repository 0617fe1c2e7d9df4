"""Vector environments: B copies of an env behind one batched interface (what the parallel runner talks to).

Interface (B = number of envs, N = agents):

    get_env_info() -> dict                     # state_shape, obs_shape, n_actions, n_agents, episode_limit
    reset() -> None                            # resets all B envs
    get_obs() -> np.ndarray [B, N, obs_dim] float32
    get_state() -> np.ndarray [B, state_dim] float32
    get_avail_actions() -> np.ndarray [B, N, n_actions] int
    step(actions [B, N] int64, active [B] bool) -> (rewards [B] float32, terminated [B] bool, infos: B dicts)
                                               # inactive envs are not stepped; their reward is 0, info {};
                                               # envs with per-agent rewards (common_reward False): [B, N]
    save_replay() -> None                      # every env saves a replay of its episodes (StarCraft II)
    get_stats() -> dict ; close() -> None

`SubprocVecEnv` runs each env in its own `spawn` worker process (never `fork`: a forked child of a process that
has started JAX deadlocks); `InProcessVecEnv` steps single envs one after the other in this process.
"""
import multiprocessing
import signal
import traceback

import numpy as np


def _stack_rewards(num_envs, stepped, rewards):
    """[B] (team rewards) or [B, N] (per-agent rewards) float32, 0 for the envs not stepped."""
    shape = np.shape(rewards[0]) if rewards else ()
    stacked = np.zeros((num_envs,) + shape, dtype=np.float32)
    for i, reward in zip(stepped, rewards):
        stacked[i] = reward
    return stacked


def _observations(env):
    return (
        np.asarray(env.get_obs(), dtype=np.float32),
        np.asarray(env.get_state(), dtype=np.float32),
        np.asarray(env.get_avail_actions(), dtype=np.int64),
    )


class _BatchedObservations:
    """Holds the latest obs/state/avail_actions of every env and serves them as stacked arrays."""

    def _init_observations(self, num_envs):
        self._obs = [None] * num_envs
        self._state = [None] * num_envs
        self._avail_actions = [None] * num_envs

    def _store(self, index, observations):
        self._obs[index], self._state[index], self._avail_actions[index] = observations

    def _require_reset(self):
        if any(obs is None for obs in self._obs):
            raise RuntimeError("vector env used before reset(); call reset() first")

    def get_obs(self):
        self._require_reset()
        return np.stack(self._obs)

    def get_state(self):
        self._require_reset()
        return np.stack(self._state)

    def get_avail_actions(self):
        self._require_reset()
        return np.stack(self._avail_actions)

    def _check_step_args(self, actions, active):
        actions = np.asarray(actions)
        if actions.ndim != 2 or actions.shape[0] != self.num_envs:
            raise ValueError(f"actions must have shape ({self.num_envs}, n_agents), got {actions.shape}")
        active = np.ones(self.num_envs, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if active.shape != (self.num_envs,):
            raise ValueError(f"active must have shape ({self.num_envs},), got {active.shape}")
        return actions, active


class InProcessVecEnv(_BatchedObservations):
    """Single envs stepped sequentially in this process (the episode runner, debugging)."""

    def __init__(self, envs):
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        self._init_observations(self.num_envs)

    def get_env_info(self):
        return self.envs[0].get_env_info()

    def reset(self):
        for i, env in enumerate(self.envs):
            env.reset()
            self._store(i, _observations(env))

    def step(self, actions, active=None):
        actions, active = self._check_step_args(actions, active)
        stepped = np.flatnonzero(active)
        rewards = []
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos = [{} for _ in range(self.num_envs)]
        for i in stepped:
            reward, terminated[i], infos[i] = self.envs[i].step(actions[i])
            rewards.append(reward)
            self._store(i, _observations(self.envs[i]))
        return _stack_rewards(self.num_envs, stepped, rewards), terminated, infos

    def save_replay(self):
        for env in self.envs:
            env.save_replay()

    def get_stats(self):
        return {"env_stats": [env.get_stats() for env in self.envs]}

    def close(self):
        for env in self.envs:
            env.close()


def _worker(conn, env_key, env_args):
    """Worker loop: builds one env, then serves commands until "close". Errors are sent back, not raised.

    Ctrl-C (sent to the whole terminal process group) and SIGTERM (SLURM signals every process) are ignored: the
    parent stops its workers itself (close()); a worker whose parent died sees the pipe close and exits quietly.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from envs import REGISTRY  # imported in the child: the parent's modules are not inherited under spawn

    env = None
    try:
        env = REGISTRY[env_key](**env_args)
        conn.send(("ok", None))
        while True:
            command, payload = conn.recv()
            if command == "reset":
                env.reset()
                result = _observations(env)
            elif command == "step":
                reward, terminated, info = env.step(payload)
                result = (np.asarray(reward, dtype=np.float32), bool(terminated), info, _observations(env))
            elif command == "get_env_info":
                result = env.get_env_info()
            elif command == "get_stats":
                result = env.get_stats()
            elif command == "save_replay":
                result = env.save_replay()
            elif command == "close":
                env.close()
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown vector-env command {command!r}")
            conn.send(("ok", result))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone (killed or interrupted): nobody to answer
    except Exception as exc:  # hand the failure to the parent, which re-raises it
        try:
            conn.send(("error", (exc, traceback.format_exc())))
        except Exception:  # the exception itself cannot be pickled: send its text
            conn.send(("error", (RuntimeError(repr(exc)), traceback.format_exc())))
    finally:
        conn.close()


class EnvWorkerError(RuntimeError):
    """Carries the traceback of a failure inside an env worker process."""


class SubprocVecEnv(_BatchedObservations):
    """B single envs, one per `spawn` worker process; env i is built with env_args["seed"] = seed + i."""

    def __init__(self, env_key, env_args, num_envs, seed):
        context = multiprocessing.get_context("spawn")
        self.num_envs = num_envs
        self.conns = []
        self.processes = []
        for i in range(num_envs):
            parent_conn, child_conn = context.Pipe()
            worker_args = dict(env_args, seed=seed + i)
            process = context.Process(target=_worker, args=(child_conn, env_key, worker_args), daemon=True)
            process.start()
            child_conn.close()
            self.conns.append(parent_conn)
            self.processes.append(process)
        self._closed = False
        self._init_observations(num_envs)
        try:
            for i in range(num_envs):
                self._receive(i)
            self._env_info = self._call(0, "get_env_info")
        except BaseException:
            self.close()
            raise

    def _receive(self, index):
        try:
            status, payload = self.conns[index].recv()
        except EOFError:
            raise EnvWorkerError(f"env worker {index} exited unexpectedly (exit code "
                                 f"{self.processes[index].exitcode})") from None
        if status == "error":
            exc, remote_traceback = payload
            raise exc from EnvWorkerError(f"in env worker {index}:\n{remote_traceback}")
        return payload

    def _call(self, index, command, payload=None):
        self.conns[index].send((command, payload))
        return self._receive(index)

    def get_env_info(self):
        return dict(self._env_info)

    def reset(self):
        for conn in self.conns:
            conn.send(("reset", None))
        for i in range(self.num_envs):
            self._store(i, self._receive(i))

    def step(self, actions, active=None):
        actions, active = self._check_step_args(actions, active)
        stepped = np.flatnonzero(active)
        for i in stepped:
            self.conns[i].send(("step", actions[i]))
        rewards = []
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos = [{} for _ in range(self.num_envs)]
        for i in stepped:
            reward, terminated[i], infos[i], observations = self._receive(i)
            rewards.append(reward)
            self._store(i, observations)
        return _stack_rewards(self.num_envs, stepped, rewards), terminated, infos

    def save_replay(self):
        for i in range(self.num_envs):
            self._call(i, "save_replay")

    def get_stats(self):
        return {"env_stats": [self._call(i, "get_stats") for i in range(self.num_envs)]}

    def close(self):
        if self._closed:
            return
        self._closed = True
        for conn, process in zip(self.conns, self.processes):
            if process.is_alive():
                try:
                    conn.send(("close", None))
                except (BrokenPipeError, OSError):
                    pass
        for conn, process in zip(self.conns, self.processes):
            process.join(timeout=10)
            if process.is_alive():  # SIGKILL: workers ignore SIGTERM
                process.kill()
                process.join()
            conn.close()
