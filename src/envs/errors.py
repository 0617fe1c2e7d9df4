"""Environment set-up errors, importable without importing any simulator (main.py catches them)."""

SC2_INSTALL_HINT = (
    "Real SMAC (--env-config=sc2) needs StarCraft II and oxwhirl's SMAC package, which are not part of the default "
    "install. To use it: (1) download the StarCraft II 4.10 Linux package (SC2.4.10.zip from Blizzard's "
    "s2client-proto releases) and unzip it, e.g. to ~/StarCraftII; (2) unzip SMAC_Maps.zip (oxwhirl/smac release) "
    "into $SC2PATH/Maps/SMAC_Maps; (3) run `pip install -r requirements-sc2.txt`, which installs SMAC from its git "
    "repository (PyPI's `smac` is SMAC3, an unrelated AutoML tool, and does not provide `smac.env`); (4) export "
    "SC2PATH=<the StarCraftII folder> (default ~/StarCraftII). Without StarCraft II, use the embedded SMAX "
    "simulator instead: --env-config=smax (results on SMAX are not SMAC numbers)."
)

SMACV2_INSTALL_HINT = (
    "SMACv2 (--env-config=sc2v2) needs StarCraft II, oxwhirl's SMACv2 package and the SMACv2 maps, which are not "
    "part of the default install. To use it: (1) download the StarCraft II 4.10 Linux package (SC2.4.10.zip from "
    "Blizzard's s2client-proto releases) and unzip it, e.g. to ~/StarCraftII; (2) `pip install "
    "git+https://github.com/oxwhirl/smacv2.git` (not on PyPI); (3) copy the SMACv2 maps (the 32x32_flat map behind "
    "10gen_protoss / 10gen_terran / 10gen_zerg: SMAC_Maps.zip of the oxwhirl/smacv2 release, or the package's "
    "smacv2/env/starcraft2/maps/SMAC_Maps folder) into $SC2PATH/Maps/SMAC_Maps; (4) export SC2PATH=<the "
    "StarCraftII folder> (default ~/StarCraftII). Without StarCraft II, SMAX's smacv2_5_units / smacv2_10_units / "
    "smacv2_20_units maps (--env-config=smax) play SMACv2-style random teams in JAX (not SMACv2 numbers)."
)


class SC2SetupError(RuntimeError):
    """StarCraft II or oxwhirl SMAC is missing or cannot start; the message says how to install them.

    args holds only the reason (so the error pickles back unchanged from a spawn env worker); str() adds the hint.
    """

    install_hint = SC2_INSTALL_HINT

    def __str__(self):
        return f"{self.args[0]} {self.install_hint}"


class SMACv2SetupError(SC2SetupError):
    """StarCraft II or oxwhirl SMACv2 is missing or cannot start; the message says how to install them."""

    install_hint = SMACV2_INSTALL_HINT
