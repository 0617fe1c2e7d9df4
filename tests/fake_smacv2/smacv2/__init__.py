"""A stand-in for oxwhirl SMACv2, for testing the sc2v2 code path without StarCraft II.

Put `tests/fake_smacv2` on PYTHONPATH: `from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper`
then gives a fake env with SMACv2's constructor keywords (capability_config, conic_fov, use_unit_ranges, ...), its
10gen_* maps and unit counts from the capability config, and the fake SMAC battles of tests/fake_smac.
"""
