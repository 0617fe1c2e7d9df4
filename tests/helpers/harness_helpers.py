"""Helpers for the harness tests: merged configs as args, and running src/main.py in a subprocess."""
import glob
import json
import os
import subprocess
import sys
from types import SimpleNamespace

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(REPO_ROOT, "src", "main.py")


def merged_config(alg_config="qmix", env_config="matrix", **overrides):
    """default < env < alg < overrides, exactly as main.py merges them (without Sacred)."""
    import main

    params = [f"--config={alg_config}", f"--env-config={env_config}"]
    config = main.build_config(params)
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def make_args(alg_config="qmix", env_config="matrix", seed=0, **overrides):
    config = merged_config(alg_config, env_config, **overrides)
    config["seed"] = seed
    config["env_args"]["seed"] = seed
    config["device"] = "cpu"
    return SimpleNamespace(**config)


def run_main(args, tmp_path, timeout=240, check=True):
    """Runs src/main.py with `args` (plus local_results_path=tmp_path); returns the CompletedProcess."""
    cmd = [sys.executable, MAIN] + list(args)
    if "with" in cmd:
        cmd.append(f"local_results_path={tmp_path}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"main.py exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-5000:]}")
    return proc


def sacred_runs(tmp_path, name, label):
    """Run directories results/sacred/<name>/<label>/<id>/, oldest first."""
    runs = glob.glob(os.path.join(str(tmp_path), "sacred", name, label, "[0-9]*"))
    return sorted(runs, key=lambda p: int(os.path.basename(p)))


def load_json(run_dir, filename):
    with open(os.path.join(run_dir, filename)) as f:
        return json.load(f)
