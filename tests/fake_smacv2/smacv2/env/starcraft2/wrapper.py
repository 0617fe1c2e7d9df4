"""Fake `StarCraftCapabilityEnvWrapper`: SMACv2's constructor keywords and capability config on the fake SMAC
battles (tests/fake_smac, loaded from its file so that no `smac` package is imported, as with real SMACv2).

Sizes follow SMACv2's formulas for conic_fov False (smacv2/env/starcraft2/starcraft2.py): its 10gen_* maps with
n_units / n_enemies from the capability config, 3 unit-type bits, episode limit 200, and 2 own-position
observation features with obs_own_pos.
"""
import importlib.util
import os

import numpy as np

FAKE_SMAC_ENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 4, "fake_smac", "smac",
                             "env", "__init__.py")
_spec = importlib.util.spec_from_file_location("fake_smac_env_for_smacv2", FAKE_SMAC_ENV)
fake_smac = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_smac)

# SMACv2's smac_maps.py: map -> (race, episode limit); both teams have the same race, 3 unit-type bits
GEN_MAPS = {"10gen_protoss": ("P", 200), "10gen_terran": ("T", 200), "10gen_zerg": ("Z", 200)}
UNIT_TYPES = {"P": {"stalker", "zealot", "colossus"}, "T": {"marine", "marauder", "medivac"},
              "Z": {"zergling", "baneling", "hydralisk"}}
CREATED = []  # the keyword arguments of every wrapper built, for tests to read what SMACv2 was given
DISTRIBUTIONS = {"team_gen": "weighted_teams", "start_positions": "surrounded_and_reflect", "enemy_mask": "mask",
                 "attack": "per_agent_uniform", "health": "per_agent_uniform"}


class StarCraft2Env(fake_smac.StarCraft2Env):
    def __init__(self, capability_config=None, conic_fov=False, num_fov_actions=12, use_unit_ranges=False,
                 min_attack_range=2, obs_own_pos=False, obs_starcraft=True, kill_unit_step_mul=2,
                 fully_observable=False, prob_obs_enemy=1.0, action_mask=True, **smac_kwargs):
        if conic_fov:
            raise NotImplementedError("the fake SMACv2 env has no field-of-view actions (conic_fov=True)")
        self.capability_config = capability_config or {}
        self.obs_own_pos = obs_own_pos
        self.use_unit_ranges = use_unit_ranges
        self.min_attack_range = min_attack_range
        super().__init__(**smac_kwargs)

    def _map_params(self, map_name):
        race, limit = GEN_MAPS[map_name]  # an unknown map raises KeyError, like SMACv2's get_map_params
        return self.capability_config["n_units"], self.capability_config["n_enemies"], limit, race, race, 3

    def _own_obs_features(self):
        return super()._own_obs_features() + (2 if self.obs_own_pos else 0)


class StarCraftCapabilityEnvWrapper:
    """SMACv2's wrapper: draws the teams from the capability config at every reset, forwards the rest."""

    def __init__(self, **kwargs):
        config = kwargs["capability_config"]
        missing = {"n_units", "n_enemies"} - set(config)
        if missing:
            raise KeyError(f"capability_config needs {sorted(missing)}")
        for key, distribution in config.items():
            if key in DISTRIBUTIONS and distribution["dist_type"] != DISTRIBUTIONS[key]:
                raise ValueError(f"fake SMACv2: {key} needs dist_type {DISTRIBUTIONS[key]!r}")
        self.env = StarCraft2Env(**kwargs)
        CREATED.append(kwargs)
        self._team_rng = np.random.RandomState(self.env.seed())
        self.teams = []

    def reset(self):
        team_gen = self.env.capability_config.get("team_gen")
        if team_gen is not None:
            race = GEN_MAPS[self.env.map_name][0]
            unknown = set(team_gen["unit_types"]) - UNIT_TYPES[race]
            if unknown:
                raise ValueError(f"unit types {sorted(unknown)} are not {race} units")
            self.teams.append(list(self._team_rng.choice(team_gen["unit_types"], size=self.env.n_agents,
                                                         p=team_gen["weights"])))
        return self.env.reset()

    def __getattr__(self, name):
        return getattr(self.env, name)
