"""JaxMARL SMAX (HeuristicEnemySMAX) behind SMAC's interface and action layout.

`SMAXVecEnv` runs B environments as one jitted `vmap` in this process (JAX must never be forked); `SMAXEnv` is the
single-env `MultiAgentEnv`, a B=1 vector env. Actions follow SMAC: 0 no-op (dead agents only), 1 stop, 2 north,
3 south, 4 east, 5 west, 6+j attack enemy j; n_actions = 6 + n_enemies.
"""

import logging
import os
import sys

import numpy as np

import jax
import jax.numpy as jnp


def _import_jaxmarl_quietly():
    """Import jaxmarl's environments with file descriptor 1 on /dev/null.

    jaxmarl 0.2.0 prints "Importing submoduled environments..." at import, and its mabrax module sets
    sys.stdout/sys.stderr to sys.__stdout__/sys.__stderr__, which would break Sacred's and pytest's capturing; so
    silence the descriptor and put the Python stream objects back afterwards.
    """
    saved_stdout, saved_stderr = sys.stdout, sys.stderr
    saved_stdout.flush()
    sys.__stdout__.flush()
    saved_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        import jaxmarl.environments  # noqa: F401
        sys.__stdout__.flush()
    finally:
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        os.close(devnull)
        sys.stdout, sys.stderr = saved_stdout, saved_stderr


_import_jaxmarl_quietly()
from jaxmarl.environments.smax import (  # noqa: E402
    HeuristicEnemySMAX, Scenario, map_name_to_scenario, register_scenario)
from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO  # noqa: E402

from envs.multiagentenv import MultiAgentEnv  # noqa: E402

logger = logging.getLogger(__name__)
# JAX logs at INFO that it found no TPU each time a process starts its backend; not useful in run logs
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# SMAC's episode limits (smac/env/starcraft2/maps/smac_maps.py); maps SMAC lacks get SMAX's default.
SMAC_EPISODE_LIMITS = {
    "3m": 60, "8m": 120, "25m": 150, "5m_vs_6m": 70, "8m_vs_9m": 120, "10m_vs_11m": 150, "27m_vs_30m": 180,
    "2s3z": 120, "3s5z": 150, "3s5z_vs_3s6z": 170, "3s_vs_3z": 150, "3s_vs_4z": 200, "3s_vs_5z": 250,
    "2m_vs_1z": 150, "corridor": 400, "6h_vs_8z": 150,
}
SMAX_DEFAULT_EPISODE_LIMIT = 100

# SMAC maps that SMAX does not ship but its unit types allow. SMAX unit type ids: 0 marine, 1 marauder, 2 stalker,
# 3 zealot, 4 zergling, 5 hydralisk; allies first, then enemies. "corridor" keeps SMAC's units, not its terrain.
EXTRA_SMAC_MAPS = {
    "8m_vs_9m": ([0] * 8 + [0] * 9, 8, 9),
    "3s_vs_3z": ([2] * 3 + [3] * 3, 3, 3),
    "3s_vs_4z": ([2] * 3 + [3] * 4, 3, 4),
    "2m_vs_1z": ([0] * 2 + [3], 2, 1),
    "corridor": ([3] * 6 + [4] * 24, 6, 24),
}
for _name, (_types, _n_allies, _n_enemies) in EXTRA_SMAC_MAPS.items():
    register_scenario(_name, Scenario(jnp.array(_types, dtype=jnp.uint8), _n_allies, _n_enemies, False, False))

N_SMAC_NON_ATTACK_ACTIONS = 6
# SMAC action k -> SMAX action. SMAX: 0 north, 1 east, 2 south, 3 west, 4 stop, 5+j attack j. No-op maps to stop
# (only dead agents may no-op, and SMAX ignores their actions).
SMAC_TO_SMAX_NON_ATTACK = (4, 4, 0, 2, 1, 3)
# Indices in SMAX's avail_actions of SMAC's moves north, south, east, west.
SMAX_MOVE_INDEX_FOR_SMAC = (0, 2, 1, 3)
SMAX_ATTACK_OFFSET = 5

UNIT_FEATURES_IN_STATE = 10  # SMAX world_state per unit: health, x, y, cooldown, 6 unit-type bits


def available_maps():
    """All map names SMAXEnv accepts (SMAX built-ins plus EXTRA_SMAC_MAPS), sorted."""
    return sorted(MAP_NAME_TO_SCENARIO)


def default_episode_limit(map_name):
    return SMAC_EPISODE_LIMITS.get(map_name, SMAX_DEFAULT_EPISODE_LIMIT)


def enable_compilation_cache(cache_dir):
    """Use JAX's persistent compilation cache in `cache_dir` (relative paths are taken from the repo root).

    JAX reads the setting once per process, so the first directory set (here, or by JAX_COMPILATION_CACHE_DIR)
    stays in use. An empty or null `cache_dir` leaves the setting alone.
    """
    if not cache_dir:
        return
    path = cache_dir if os.path.isabs(cache_dir) else os.path.join(REPO_ROOT, cache_dir)
    current = jax.config.jax_compilation_cache_dir
    if current is None:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
    elif os.path.abspath(current) != os.path.abspath(path):
        logger.info("JAX compilation cache already set to %s; ignoring jax_cache_dir=%s", current, path)


def _position_scale(env, state_dim, n_units, normalise_positions):
    """Per-feature scale of the world state: 1, or 1 / map size for each unit's x and y when normalising."""
    position_scale = jnp.ones(state_dim, dtype=jnp.float32)
    if normalise_positions:
        unit_offsets = jnp.arange(n_units) * UNIT_FEATURES_IN_STATE
        position_scale = position_scale.at[unit_offsets + 1].set(1.0 / env.map_width)
        position_scale = position_scale.at[unit_offsets + 2].set(1.0 / env.map_height)
    return position_scale


def _observer(env, agents, position_scale):
    """observe(obs_dict, state) -> (obs [N, obs_dim], world state, SMAC-layout availability [N, n_actions])."""
    n_agents = env.num_allies
    move_index = jnp.array(SMAX_MOVE_INDEX_FOR_SMAC)

    def observe(obs_dict, state):
        obs = jnp.stack([obs_dict[a] for a in agents]).astype(jnp.float32)
        world_state = obs_dict["world_state"].astype(jnp.float32) * position_scale
        smax_avail_actions = env.get_avail_actions(state)
        smax_avail_actions = jnp.stack([smax_avail_actions[a] for a in agents]).astype(jnp.int32)
        alive = state.state.unit_alive[:n_agents].astype(jnp.int32)
        avail_actions = jnp.concatenate(
            [(1 - alive)[:, None], alive[:, None], smax_avail_actions[:, move_index],
             smax_avail_actions[:, SMAX_ATTACK_OFFSET:]], axis=1)
        return obs, world_state, avail_actions

    return observe


class _BatchedSMAX:
    """The jitted, vmapped reset and step of one map and simulator option set (jit compiles once per B)."""

    def __init__(self, map_name, see_enemy_actions, walls_cause_death, enemy_shoots, attack_mode,
                 episode_limit, state_normalise_positions):
        # SMAX tests `step >= max_steps` before incrementing `step`, so its episodes last max_steps + 1 steps
        env = HeuristicEnemySMAX(
            scenario=map_name_to_scenario(map_name), max_steps=episode_limit - 1, see_enemy_actions=see_enemy_actions,
            walls_cause_death=walls_cause_death, enemy_shoots=enemy_shoots, attack_mode=attack_mode)
        n_agents, n_enemies = env.num_allies, env.num_enemies
        agents = env.agents
        self.n_agents, self.n_enemies = n_agents, n_enemies
        self.n_actions = N_SMAC_NON_ATTACK_ACTIONS + n_enemies
        self.obs_dim = env.obs_size
        self.state_dim = env.state_size
        smac_to_smax = jnp.array(
            SMAC_TO_SMAX_NON_ATTACK + tuple(SMAX_ATTACK_OFFSET + j for j in range(n_enemies)), dtype=jnp.int32)
        observe = _observer(env, agents, _position_scale(env, self.state_dim, n_agents + n_enemies,
                                                         state_normalise_positions))

        def reset_one(key):
            key, reset_key = jax.random.split(key)
            obs_dict, state = env.reset(reset_key)
            carry = (key, state) + observe(obs_dict, state)
            # drop weak types (SMAX's step counter) so reset and step return the same signature: one step compile
            return jax.tree.map(lambda leaf: leaf.astype(leaf.dtype), carry)

        def step_one(carry, smac_actions, active):
            key, state = carry[0], carry[1]
            next_key, step_key = jax.random.split(key)
            actions = {a: smac_to_smax[smac_actions[i]] for i, a in enumerate(agents)}
            obs_dict, next_state, rewards, dones, _ = env.step_env(step_key, state, actions)
            alive = next_state.state.unit_alive
            allies_alive = alive[:n_agents]
            enemies_alive = alive[n_agents:]
            all_allies_dead = ~allies_alive.any()
            all_enemies_dead = ~enemies_alive.any()
            terminated = dones["__all__"]
            stepped = (next_key, next_state) + observe(obs_dict, next_state)
            # finished envs stay frozen until the next reset()
            next_carry = jax.tree.map(lambda new, old: jnp.where(active, new, old), stepped, carry)
            step_result = (
                rewards[agents[0]],  # the team reward; every ally gets the same
                terminated,
                all_enemies_dead & ~all_allies_dead,
                terminated & ~all_enemies_dead & ~all_allies_dead,
                all_allies_dead & all_enemies_dead,
                n_agents - allies_alive.sum(),
                n_enemies - enemies_alive.sum(),
            )
            return next_carry, step_result

        self.reset = jax.jit(jax.vmap(reset_one))
        self.step = jax.jit(jax.vmap(step_one))


_COMPILED = {}


def _batched_smax(**options):
    """One `_BatchedSMAX` per option set, shared by all env objects so each (map, B) compiles once per process."""
    key = tuple(sorted(options.items()))
    if key not in _COMPILED:
        _COMPILED[key] = _BatchedSMAX(**options)
    return _COMPILED[key]


class SMAXVecEnv:
    """B SMAX battles stepped in lock-step by one jitted vmap; see docs/architecture.md (vector env).

    Env i draws its randomness from `jax.random.PRNGKey(seed + i)`, split at every reset and step, so runs are
    deterministic given `seed`, and env i of a batch replays exactly like a B=1 env seeded `seed + i`.
    """

    def __init__(self, num_envs, map_name="3m", seed=0, episode_limit=None, reward_scale=10.0,
                 see_enemy_actions=False, walls_cause_death=True, enemy_shoots=True, attack_mode="closest",
                 state_normalise_positions=True, jax_cache_dir=".jax_cache"):
        if map_name not in MAP_NAME_TO_SCENARIO:
            raise ValueError(f"Unknown SMAX map {map_name!r}. Available maps: {', '.join(available_maps())}")
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if episode_limit is None:
            episode_limit = default_episode_limit(map_name)
        if not isinstance(episode_limit, (int, np.integer)) or episode_limit < 1:
            raise ValueError(f"episode_limit must be a positive integer or null, got {episode_limit!r}")
        if attack_mode not in ("closest", "random"):
            raise ValueError(f"attack_mode must be 'closest' or 'random', got {attack_mode!r}")
        enable_compilation_cache(jax_cache_dir)
        self.map_name = map_name
        self.num_envs = int(num_envs)
        self.episode_limit = int(episode_limit)
        self.reward_scale = float(reward_scale)
        self._sim = _batched_smax(
            map_name=map_name, see_enemy_actions=bool(see_enemy_actions),
            walls_cause_death=bool(walls_cause_death), enemy_shoots=bool(enemy_shoots), attack_mode=attack_mode,
            episode_limit=self.episode_limit, state_normalise_positions=bool(state_normalise_positions))
        self.n_agents = self._sim.n_agents
        self.n_enemies = self._sim.n_enemies
        self.n_actions = self._sim.n_actions
        self.battles_won = 0
        self.battles_game = 0
        self.battles_draw = 0
        self.timeouts = 0
        self._carry = None
        self._terminated = np.zeros(self.num_envs, dtype=bool)
        self.seed(seed)

    def seed(self, seed=None):
        """Returns the seed; a new `seed` re-seeds all B envs (env i from seed + i) from the next reset()."""
        if seed is None:
            return self._seed
        self._seed = int(seed)
        seeds = (np.arange(self.num_envs, dtype=np.uint64) + np.uint64(self._seed % 2 ** 32)) % 2 ** 32
        self._keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
        self._carry = None
        return self._seed

    def get_rng_state(self):
        """The B envs' PRNG keys as a uint32 array [B, 2]: with set_rng_state, the next reset() and every episode
        after it replay exactly (battle counters are not part of it)."""
        keys = self._keys if self._carry is None else self._carry[0]
        return np.array(jax.device_get(keys))

    def set_rng_state(self, keys):
        keys = np.asarray(keys, dtype=np.uint32)
        if keys.shape != (self.num_envs, 2):
            raise ValueError(f"expected PRNG keys of shape ({self.num_envs}, 2), got {keys.shape}")
        self._keys = jnp.asarray(keys)
        self._carry = None  # the next reset() starts from these keys

    def get_env_info(self):
        return {
            "state_shape": self._sim.state_dim,
            "obs_shape": self._sim.obs_dim,
            "n_actions": self.n_actions,
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }

    def reset(self):
        keys = self._keys if self._carry is None else self._carry[0]
        self._carry = self._sim.reset(keys)
        self._fetch_observations()
        self._terminated[:] = False

    def _fetch_observations(self):
        # np.array copies: the host arrays must be writable (torch.from_numpy, in-place masking in runners)
        obs, state, avail_actions = jax.device_get(self._carry[2:])
        self._obs, self._state, self._avail_actions = np.array(obs), np.array(state), np.array(avail_actions)

    def _require_reset(self):
        if self._carry is None:
            raise RuntimeError("SMAX env used before reset(); call reset() first")

    def get_obs(self):
        self._require_reset()
        return self._obs

    def get_state(self):
        self._require_reset()
        return self._state

    def get_avail_actions(self):
        self._require_reset()
        return self._avail_actions

    def _check_actions(self, actions, active):
        expected = (self.num_envs, self.n_agents)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected} (envs, agents), got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
        if active.shape != (self.num_envs,):
            raise ValueError(f"active must have shape ({self.num_envs},), got {active.shape}")
        stale = np.flatnonzero(active & self._terminated)
        if stale.size:
            raise RuntimeError(f"env {stale[0]} was stepped after its episode ended; call reset() first")
        in_range = (actions >= 0) & (actions < self.n_actions)
        chosen_available = np.take_along_axis(self._avail_actions, np.where(in_range, actions, 0)[..., None], axis=-1)[..., 0]
        bad = active[:, None] & ~(in_range & (chosen_available == 1))
        if bad.any():
            env_index, agent = np.argwhere(bad)[0]
            raise ValueError(
                f"env {env_index} agent {agent}: action {actions[env_index, agent]} is not available "
                f"(avail_actions {self._avail_actions[env_index, agent].tolist()}; SMAC layout: 0 no-op, 1 stop, "
                f"2-5 move N/S/E/W, 6+j attack enemy j)")

    def step(self, actions, active=None):
        """Step the envs where `active` is True; returns (rewards [B], terminated [B], infos: B dicts)."""
        self._require_reset()
        actions = np.asarray(actions)
        active = np.ones(self.num_envs, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        self._check_actions(actions, active)
        self._carry, step_result = self._sim.step(self._carry, actions.astype(np.int32), active)
        reward, terminated, won, timeout, draw, dead_allies, dead_enemies = jax.device_get(step_result)
        self._fetch_observations()
        terminated = terminated & active
        self._terminated |= terminated
        self.battles_game += int(terminated.sum())
        self.battles_won += int((won & terminated).sum())
        self.battles_draw += int((draw & terminated).sum())
        self.timeouts += int((timeout & terminated).sum())
        rewards = np.where(active, reward * self.reward_scale, 0.0).astype(np.float32)
        infos = [
            {
                "battle_won": bool(won[b]),
                "dead_allies": int(dead_allies[b]),
                "dead_enemies": int(dead_enemies[b]),
                "episode_limit": bool(timeout[b]),
            } if active[b] else {}
            for b in range(self.num_envs)
        ]
        return rewards, terminated, infos

    def get_stats(self):
        return {
            "battles_won": self.battles_won,
            "battles_game": self.battles_game,
            "battles_draw": self.battles_draw,
            "win_rate": self.battles_won / self.battles_game if self.battles_game else 0.0,
            "timeouts": self.timeouts,
        }

    def close(self):
        self._carry = None


class SMAXEnv(MultiAgentEnv):
    """Single SMAX battle with SMAC's interface (a B=1 SMAXVecEnv)."""

    def __init__(self, map_name="3m", seed=0, **kwargs):
        self._vec = SMAXVecEnv(1, map_name=map_name, seed=seed, **kwargs)
        self.map_name = map_name
        self.n_agents = self._vec.n_agents
        self.n_enemies = self._vec.n_enemies
        self.n_actions = self._vec.n_actions
        self.episode_limit = self._vec.episode_limit

    def step(self, actions):
        actions = np.asarray(actions).reshape(1, -1)
        rewards, terminated, infos = self._vec.step(actions)
        return float(rewards[0]), bool(terminated[0]), infos[0]

    def get_obs(self):
        return list(self._vec.get_obs()[0])

    def get_obs_size(self):
        return self._vec.get_env_info()["obs_shape"]

    def get_state(self):
        return self._vec.get_state()[0]

    def get_state_size(self):
        return self._vec.get_env_info()["state_shape"]

    def get_avail_actions(self):
        return self._vec.get_avail_actions()[0].tolist()

    def get_total_actions(self):
        return self.n_actions

    def reset(self):
        self._vec.reset()
        return self.get_obs(), self.get_state()

    def seed(self, seed=None):
        return self._vec.seed(seed)

    def get_env_info(self):
        return self._vec.get_env_info()

    def get_stats(self):
        return self._vec.get_stats()

    def close(self):
        self._vec.close()
