"""SMACv2 (oxwhirl `smacv2`, StarCraft II) behind the MultiAgentEnv interface, imported only for the sc2v2 env.

`env_args.map_name` names a capability config as in EPyMARL: RACE_N_vs_M (protoss_5_vs_5, terran_10_vs_11,
zerg_20_vs_23, any N and M) or sc2_gen_RACE (= RACE_5_vs_5). The race's file in config/envs/smacv2_configs/ holds
the SC2 map (10gen_protoss, ...) and the unit-type and start-position distributions; N and M become the capability
config's n_units and n_enemies. The other env_args are SMACv2 StarCraft2Env keywords (config/envs/sc2v2.yaml).
A missing smacv2 package or StarCraft II raises `envs.errors.SMACv2SetupError`, whose message says how to install
them.
"""
import os
import re

import yaml

from envs.errors import SMACv2SetupError
from envs.smac_env import SMACEnv

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "envs",
                            "smacv2_configs")
RACES = ("protoss", "terran", "zerg")
SCENARIO = re.compile(rf"^(?P<race>{'|'.join(RACES)})_(?P<n_units>\d+)_vs_(?P<n_enemies>\d+)$")
GEN_SCENARIO = re.compile(rf"^sc2_gen_(?P<race>{'|'.join(RACES)})$")  # EPyMARL's names of the 5 vs 5 configs


def scenario_env_args(scenario):
    """StarCraft2Env keywords of a capability-config name: the SC2 map and the capability config."""
    match = SCENARIO.match(scenario or "")
    gen_match = GEN_SCENARIO.match(scenario or "")
    if match:
        race, n_units, n_enemies = match["race"], int(match["n_units"]), int(match["n_enemies"])
    elif gen_match:
        race, n_units, n_enemies = gen_match["race"], 5, 5
    else:
        raise ValueError(f"Unknown SMACv2 scenario env_args.map_name={scenario!r}: write RACE_N_vs_M (RACE one of "
                         f"{', '.join(RACES)}, e.g. protoss_5_vs_5, terran_10_vs_11, zerg_20_vs_23) or sc2_gen_RACE")
    if n_units < 1 or n_enemies < 1:
        raise ValueError(f"SMACv2 scenario {scenario!r} needs at least one unit on each side")
    with open(os.path.join(SCENARIO_DIR, f"{race}.yaml")) as f:
        race_config = yaml.safe_load(f)
    capability_config = {"n_units": n_units, "n_enemies": n_enemies, **race_config["capability_config"]}
    return {"map_name": race_config["map_name"], "capability_config": capability_config}


def import_capability_wrapper():
    """Returns SMACv2's StarCraftCapabilityEnvWrapper class, or raises SMACv2SetupError saying what is wrong."""
    try:
        from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper
    except ImportError as error:
        raise SMACv2SetupError(f"oxwhirl SMACv2 is not installed (`import smacv2.env` failed: {error}).") from error
    except Exception as error:  # e.g. protobuf >= 3.21: "Descriptors cannot be created directly"
        raise SMACv2SetupError(
            f"Importing smacv2.env failed with {type(error).__name__}: {error}. A protobuf newer than 3.20 breaks "
            "pysc2; pin protobuf<3.21.") from error
    return StarCraftCapabilityEnvWrapper


class SMACv2Env(SMACEnv):
    """SMACv2's StarCraftCapabilityEnvWrapper (new teams and start positions every episode) as a SMAC env."""

    setup_error = SMACv2SetupError

    def __init__(self, map_name="protoss_5_vs_5", **env_args):
        super().__init__(**env_args, **scenario_env_args(map_name))
        self.scenario = map_name

    def _make_env(self, env_args):
        capability_wrapper = import_capability_wrapper()
        try:
            return capability_wrapper(**env_args)
        except KeyError as error:
            raise ValueError(f"SMACv2 does not know map {env_args.get('map_name')!r} ({error}); its capability "
                             "maps are 10gen_protoss, 10gen_terran and 10gen_zerg") from error
