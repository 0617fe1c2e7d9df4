"""Fake `smac.env.StarCraft2Env`: SMAC's constructor, sizes, masks, info and stats, with seeded random battles.

Sizes follow SMAC's formulas (smac/env/starcraft2/starcraft2.py) and map table (smac_maps.py). The battle is a toy:
an ally's attack on enemy j removes a random share of j's health, alive enemies hit random allies, and the episode
ends when a team is dead or at the map's episode limit. Observations carry the real alive/health features at
SMAC's positions and seeded noise elsewhere.
"""

import os

import numpy as np

# name: (n_agents, n_enemies, episode_limit, ally race, enemy race, unit_type_bits), from SMAC's smac_maps.py
MAP_PARAMS = {
    "3m": (3, 3, 60, "T", "T", 0),
    "8m": (8, 8, 120, "T", "T", 0),
    "25m": (25, 25, 150, "T", "T", 0),
    "5m_vs_6m": (5, 6, 70, "T", "T", 0),
    "8m_vs_9m": (8, 9, 120, "T", "T", 0),
    "10m_vs_11m": (10, 11, 150, "T", "T", 0),
    "27m_vs_30m": (27, 30, 180, "T", "T", 0),
    "MMM": (10, 10, 150, "T", "T", 3),
    "MMM2": (10, 12, 180, "T", "T", 3),
    "2s3z": (5, 5, 120, "P", "P", 2),
    "3s5z": (8, 8, 150, "P", "P", 2),
    "3s5z_vs_3s6z": (8, 9, 170, "P", "P", 2),
    "3s_vs_3z": (3, 3, 150, "P", "P", 0),
    "3s_vs_4z": (3, 4, 200, "P", "P", 0),
    "3s_vs_5z": (3, 5, 250, "P", "P", 0),
    "1c3s5z": (9, 9, 180, "P", "P", 3),
    "2m_vs_1z": (2, 1, 150, "T", "P", 0),
    "corridor": (6, 24, 400, "P", "Z", 0),
    "6h_vs_8z": (6, 8, 150, "Z", "P", 0),
    "2s_vs_1sc": (2, 1, 300, "P", "Z", 0),
    "so_many_baneling": (7, 32, 100, "P", "Z", 0),
    "bane_vs_bane": (24, 24, 200, "Z", "Z", 2),
    "2c_vs_64zg": (2, 64, 400, "P", "Z", 0),
}

N_ACTIONS_NO_ATTACK = 6  # no-op, stop, move north/south/east/west
N_MOVE_FEATURES = 4
N_PATHING_FEATURES = 8
N_HEIGHT_FEATURES = 9


class StarCraft2Env:
    def __init__(self, map_name="8m", step_mul=8, move_amount=2, difficulty="7", game_version=None, seed=None,
                 continuing_episode=False, obs_all_health=True, obs_own_health=True, obs_last_action=False,
                 obs_pathing_grid=False, obs_terrain_height=False, obs_instead_of_state=False,
                 obs_timestep_number=False, state_last_action=True, state_timestep_number=False,
                 reward_sparse=False, reward_only_positive=True, reward_death_value=10, reward_win=200,
                 reward_defeat=0, reward_negative_scale=0.5, reward_scale=True, reward_scale_rate=20, replay_dir="",
                 replay_prefix="", window_size_x=1920, window_size_y=1200, heuristic_ai=False, heuristic_rest=False,
                 debug=False):
        self.map_name = map_name
        self.n_agents, self.n_enemies, self.episode_limit, ally_race, enemy_race, self.unit_type_bits = (
            self._map_params(map_name))
        self.replay_dir = replay_dir
        self.replay_prefix = replay_prefix
        self.continuing_episode = continuing_episode
        self.obs_all_health = obs_all_health
        self.obs_own_health = obs_own_health
        self.obs_last_action = obs_last_action
        self.obs_pathing_grid = obs_pathing_grid
        self.obs_terrain_height = obs_terrain_height
        self.obs_instead_of_state = obs_instead_of_state
        self.obs_timestep_number = obs_timestep_number
        self.state_last_action = state_last_action
        self.state_timestep_number = state_timestep_number
        self.reward_sparse = reward_sparse
        self.reward_only_positive = reward_only_positive
        self.reward_death_value = reward_death_value
        self.reward_win = reward_win
        self.reward_defeat = reward_defeat
        self.reward_negative_scale = reward_negative_scale
        self.reward_scale = reward_scale
        self.reward_scale_rate = reward_scale_rate
        self.shield_bits_ally = 1 if ally_race == "P" else 0
        self.shield_bits_enemy = 1 if enemy_race == "P" else 0
        self.n_actions = N_ACTIONS_NO_ATTACK + self.n_enemies
        # health fractions stand in for SC2's hit points: each enemy is worth 1 damage
        self.max_reward = self.n_enemies * self.reward_death_value + self.reward_win + self.n_enemies
        self.ally_state_attr_names = ["health", "energy/cooldown", "rel_x", "rel_y"]
        self.enemy_state_attr_names = ["health", "rel_x", "rel_y"]
        if self.shield_bits_ally:
            self.ally_state_attr_names.append("shield")
        if self.shield_bits_enemy:
            self.enemy_state_attr_names.append("shield")
        type_names = [f"type_{i}" for i in range(self.unit_type_bits)]
        self.ally_state_attr_names += type_names
        self.enemy_state_attr_names += type_names
        self._seed = int(np.random.randint(0, 2 ** 31 - 1)) if seed is None else seed
        self._rng = np.random.RandomState(self._seed)  # battle dynamics
        self._noise_rng = np.random.RandomState(self._seed + 1)  # observation noise, so reading obs changes no battle
        self.battles_won = 0
        self.battles_game = 0
        self.battles_draw = 0
        self.timeouts = 0
        self.force_restarts = 0
        self._episode_count = 0
        self._episode_steps = 0
        self.ally_health = np.ones(self.n_agents)
        self.enemy_health = np.ones(self.n_enemies)
        self.last_action = np.zeros((self.n_agents, self.n_actions))

    def _map_params(self, map_name):
        return MAP_PARAMS[map_name]  # an unknown map raises KeyError, like SMAC's get_map_params

    # sizes -----------------------------------------------------------------------------------------------------
    def _ally_obs_features(self):
        size = 4 + self.unit_type_bits
        if self.obs_all_health:
            size += 1 + self.shield_bits_ally
        if self.obs_last_action:
            size += self.n_actions
        return size

    def _enemy_obs_features(self):
        size = 4 + self.unit_type_bits
        if self.obs_all_health:
            size += 1 + self.shield_bits_enemy
        return size

    def _own_obs_features(self):
        size = self.unit_type_bits
        if self.obs_own_health:
            size += 1 + self.shield_bits_ally
        if self.obs_timestep_number:
            size += 1
        return size

    def _move_obs_features(self):
        size = N_MOVE_FEATURES
        if self.obs_pathing_grid:
            size += N_PATHING_FEATURES
        if self.obs_terrain_height:
            size += N_HEIGHT_FEATURES
        return size

    def get_obs_size(self):
        return (self._move_obs_features() + self.n_enemies * self._enemy_obs_features()
                + (self.n_agents - 1) * self._ally_obs_features() + self._own_obs_features())

    def get_state_size(self):
        if self.obs_instead_of_state:
            return self.get_obs_size() * self.n_agents
        size = (self.n_agents * (4 + self.shield_bits_ally + self.unit_type_bits)
                + self.n_enemies * (3 + self.shield_bits_enemy + self.unit_type_bits))
        if self.state_last_action:
            size += self.n_agents * self.n_actions
        if self.state_timestep_number:
            size += 1
        return size

    def get_total_actions(self):
        return self.n_actions

    def get_env_info(self):
        return {
            "state_shape": self.get_state_size(),
            "obs_shape": self.get_obs_size(),
            "n_actions": self.get_total_actions(),
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
            "agent_features": self.ally_state_attr_names,
            "enemy_features": self.enemy_state_attr_names,
        }

    # episode ---------------------------------------------------------------------------------------------------
    def reset(self):
        self._episode_steps = 0
        self.ally_health = np.ones(self.n_agents)
        self.enemy_health = np.ones(self.n_enemies)
        self.last_action = np.zeros((self.n_agents, self.n_actions))
        return self.get_obs(), self.get_state()

    def get_avail_agent_actions(self, agent_id):
        if self.ally_health[agent_id] <= 0:
            return [1] + [0] * (self.n_actions - 1)
        return [0, 1, 1, 1, 1, 1] + [int(h > 0) for h in self.enemy_health]

    def get_avail_actions(self):
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def step(self, actions):
        actions_int = [int(a) for a in actions]
        for agent_id, action in enumerate(actions_int):
            avail = self.get_avail_agent_actions(agent_id)
            assert avail[action] == 1, "Agent {} cannot perform action {}".format(agent_id, action)
        self.last_action = np.eye(self.n_actions)[actions_int]
        self._episode_steps += 1
        enemy_health_before = self.enemy_health.copy()
        ally_health_before = self.ally_health.copy()
        for action in actions_int:
            if action >= N_ACTIONS_NO_ATTACK:
                target = action - N_ACTIONS_NO_ATTACK
                self.enemy_health[target] = max(0.0, self.enemy_health[target] - self._rng.uniform(0.1, 0.4))
        for _ in range(int((enemy_health_before > 0).sum())):
            alive_allies = np.flatnonzero(self.ally_health > 0)
            if alive_allies.size and self._rng.rand() < 0.3:
                target = self._rng.choice(alive_allies)
                self.ally_health[target] = max(0.0, self.ally_health[target] - self._rng.uniform(0.1, 0.4))
        reward = self._dense_reward(enemy_health_before, ally_health_before)
        dead_allies = int((self.ally_health <= 0).sum())
        dead_enemies = int((self.enemy_health <= 0).sum())
        info = {"battle_won": False}
        terminated = False
        if dead_allies == self.n_agents or dead_enemies == self.n_enemies:
            terminated = True
            self.battles_game += 1
            if dead_enemies == self.n_enemies and dead_allies < self.n_agents:
                self.battles_won += 1
                info["battle_won"] = True
                reward = 1 if self.reward_sparse else reward + self.reward_win
            elif dead_allies == self.n_agents and dead_enemies < self.n_enemies:
                reward = -1 if self.reward_sparse else reward + self.reward_defeat
            else:
                self.battles_draw += 1
        elif self._episode_steps >= self.episode_limit:
            terminated = True
            if self.continuing_episode:
                info["episode_limit"] = True
            self.battles_game += 1
            self.timeouts += 1
        if terminated:
            self._episode_count += 1
        info["dead_allies"] = dead_allies
        info["dead_enemies"] = dead_enemies
        if self.reward_scale and not self.reward_sparse:
            reward /= self.max_reward / self.reward_scale_rate
        return reward, terminated, info

    def _dense_reward(self, enemy_health_before, ally_health_before):
        if self.reward_sparse:
            return 0
        enemy_damage = enemy_health_before - self.enemy_health
        ally_damage = ally_health_before - self.ally_health
        kills = ((enemy_health_before > 0) & (self.enemy_health <= 0)).sum()
        losses = ((ally_health_before > 0) & (self.ally_health <= 0)).sum()
        reward = enemy_damage.sum() + self.reward_death_value * kills
        if not self.reward_only_positive:
            reward -= self.reward_negative_scale * (ally_damage.sum() + self.reward_death_value * losses)
        return abs(reward) if self.reward_only_positive else reward

    # observations ----------------------------------------------------------------------------------------------
    def get_obs_agent(self, agent_id):
        obs = np.zeros(self.get_obs_size(), dtype=np.float32)
        if self.ally_health[agent_id] <= 0:
            return obs  # SMAC observes nothing for dead agents
        obs[:] = self._noise_rng.uniform(-1, 1, size=obs.size)
        position = self._move_obs_features()
        obs[:N_MOVE_FEATURES] = 1  # all moves possible
        enemy_size = self._enemy_obs_features()
        for enemy in range(self.n_enemies):
            alive = self.enemy_health[enemy] > 0
            if not alive:
                obs[position:position + enemy_size] = 0
            else:
                obs[position] = 1  # available to attack
                if self.obs_all_health:
                    obs[position + 4] = self.enemy_health[enemy]
            position += enemy_size
        ally_size = self._ally_obs_features()
        for ally in range(self.n_agents):
            if ally == agent_id:
                continue
            if self.ally_health[ally] <= 0:
                obs[position:position + ally_size] = 0
            elif self.obs_all_health:
                obs[position + 4] = self.ally_health[ally]
            position += ally_size
        if self.obs_own_health:
            obs[position] = self.ally_health[agent_id]
        return obs

    def get_obs(self):
        return [self.get_obs_agent(i) for i in range(self.n_agents)]

    def get_state(self):
        if self.obs_instead_of_state:
            return np.concatenate(self.get_obs(), axis=0).astype(np.float32)
        ally_size = 4 + self.shield_bits_ally + self.unit_type_bits
        enemy_size = 3 + self.shield_bits_enemy + self.unit_type_bits
        allies = self._noise_rng.uniform(-1, 1, size=(self.n_agents, ally_size))
        allies[:, 0] = self.ally_health
        allies[self.ally_health <= 0] = 0
        enemies = self._noise_rng.uniform(-1, 1, size=(self.n_enemies, enemy_size))
        enemies[:, 0] = self.enemy_health
        enemies[self.enemy_health <= 0] = 0
        parts = [allies.ravel(), enemies.ravel()]
        if self.state_last_action:
            parts.append(self.last_action.ravel())
        if self.state_timestep_number:
            parts.append([self._episode_steps / self.episode_limit])
        return np.concatenate(parts).astype(np.float32)

    # bookkeeping -----------------------------------------------------------------------------------------------
    def get_stats(self):
        return {
            "battles_won": self.battles_won,
            "battles_game": self.battles_game,
            "battles_draw": self.battles_draw,
            "win_rate": self.battles_won / self.battles_game if self.battles_game else 0,
            "timeouts": self.timeouts,
            "restarts": self.force_restarts,
        }

    def seed(self):
        return self._seed

    def render(self, mode="human"):
        raise NotImplementedError("the fake StarCraft2Env cannot render")

    def save_replay(self):
        """Writes a stand-in replay file where SMAC writes its replays: replay_dir, named by replay_prefix."""
        prefix = self.replay_prefix or self.map_name
        os.makedirs(self.replay_dir or ".", exist_ok=True)
        path = os.path.join(self.replay_dir, f"{prefix}_{self._episode_count}_episodes_seed{self._seed}.SC2Replay")
        with open(path, "w") as f:
            f.write(f"fake replay of {self._episode_count} episodes on {self.map_name}\n")
        return path

    def close(self):
        """Nothing to release: the fake starts no StarCraft II process."""
