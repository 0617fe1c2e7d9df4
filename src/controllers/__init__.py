"""Multi-agent controller registry (key `mac`): constructors called as REGISTRY[name](scheme, groups, args).

A controller class may define `@staticmethod extra_scheme(args) -> dict` of extra episode-batch fields; the run
loop merges them into the scheme (docs/architecture.md).
"""
from controllers.basic_controller import BasicMAC
from controllers.mazero_controller import MAZeroMAC
from controllers.ppo_controller import PPOMAC

REGISTRY = {
    "basic_mac": BasicMAC,
    "mazero_mac": MAZeroMAC,
    "ppo_mac": PPOMAC,
}
