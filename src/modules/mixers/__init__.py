"""Mixer registry (key `mixer`; null = no mixer, i.e. independent learners): REGISTRY[name](args)."""
from modules.mixers.qmix import QMixer
from modules.mixers.vdn import VDNMixer

REGISTRY = {
    "qmix": QMixer,
    "vdn": VDNMixer,
}
