"""The seed-sweep runner: a YAML grid of configs x env configs x maps x `with` updates x seeds, run as local
src/main.py processes (docs/sweep.md)."""
