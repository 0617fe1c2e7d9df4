"""Command-line tools that work on the harness's outputs (see `python -m tools.results --help`)."""
