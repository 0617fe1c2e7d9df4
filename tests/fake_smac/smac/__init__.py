"""A stand-in for oxwhirl SMAC, for testing the sc2 code path without StarCraft II.

Put `tests/fake_smac` on PYTHONPATH: `from smac.env import StarCraft2Env` then gives a fake env with SMAC's
constructor, shapes, action masks, info keys and stats, and random (seeded) battle dynamics.
"""
