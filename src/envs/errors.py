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


class SC2SetupError(RuntimeError):
    """StarCraft II or oxwhirl SMAC is missing or cannot start; the message says how to install them.

    args holds only the reason (so the error pickles back unchanged from a spawn env worker); str() adds the hint.
    """

    def __str__(self):
        return f"{self.args[0]} {SC2_INSTALL_HINT}"
