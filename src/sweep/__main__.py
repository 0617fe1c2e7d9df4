"""python src/sweep GRID.yaml (from anywhere) or python -m sweep GRID.yaml (from src/, or with PYTHONPATH=src)."""
import os
import sys

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SRC_DIR = os.path.dirname(PACKAGE_DIR)
# run as `python src/sweep`, the package's own folder comes first on sys.path; src/ is what the imports need
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != PACKAGE_DIR]
if SRC_DIR not in sys.path:
    sys.path.insert(0, SRC_DIR)

from sweep.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
