"""Builds the Cython MCTS (src/mcts/ctree.pyx) and MAZero's attention kernel (src/modules/mazero/attention_kernel.pyx)
in place; `pip install -e .` or `python setup.py build_ext --inplace`."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "mcts.ctree",
        ["src/mcts/ctree.pyx"],
        include_dirs=[np.get_include()],
        # -ffp-contract=off: no FMA contraction, so every double expression rounds exactly as in mcts.ptree.
        extra_compile_args=["-O3", "-ffp-contract=off"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "modules.mazero.attention_kernel",
        ["src/modules/mazero/attention_kernel.pyx"],
        # reassociation lets the compiler vectorise the dot products over the head width (d = 16); the results
        # then differ from torch's by float rounding, as torch's own vectorised reductions do
        extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(
    package_dir={"": "src"},
    packages=["mcts", "tools", "tools.results"],
    ext_modules=cythonize(extensions, language_level=3),
    zip_safe=False,
)
