"""Diverged runs: every learner family stops at the first non-finite update with one line naming the step, the
loss and the likely cause; the Sacred record ends FAILED; no checkpoint holds a non-finite tensor; the results tool
never shows a diverged run's numbers as a result."""
import glob
import json
import math
import os

import pytest
import torch

from helpers.harness_helpers import load_json, run_main, sacred_runs
from tools.results.cli import main as results_main
from utils.divergence import DivergenceError, check_finite

TINY = ["t_max=200", "test_interval=50", "log_interval=50", "runner_log_interval=50", "learner_log_interval=50",
        "test_nepisode=2", "save_git_info=False"]


def test_check_finite_names_the_step_the_values_and_the_cause():
    weights = torch.nn.Linear(2, 2)
    check_finite(5, {"loss": torch.tensor(1.0), "grad_norm": 3.0}, weights.parameters())
    with pytest.raises(DivergenceError, match=r"^diverged at t_env 7: loss nan, grad_norm 3; lower lr") as info:
        check_finite(7, {"loss": torch.tensor(float("nan")), "grad_norm": 3.0}, weights.parameters())
    assert info.value.t_env == 7
    with torch.no_grad():
        weights.bias[0] = float("inf")
    with pytest.raises(DivergenceError, match="loss 1; non-finite parameters; lower lr"):
        check_finite(8, {"loss": 1.0}, weights.parameters())


def assert_diverged(proc, run_dir):
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "diverged at t_env" in line]
    assert len(lines) == 1 and lines[0].startswith("ERROR: diverged at t_env ") and "Traceback" not in proc.stderr
    run = load_json(run_dir, "run.json")
    assert run["status"] == "FAILED"
    diverged = load_json(run_dir, "info.json")["diverged"]
    assert diverged["message"] in lines[0] and f"t_env {diverged['t_env']}:" in lines[0]
    return lines[0]


@pytest.mark.subprocess
def test_qmix_diverging_stops_failed_and_keeps_every_checkpoint_finite(tmp_path):
    # the repro: with lr=1e6 the run used to complete and test_return_mean read 11.0, the game's optimum
    proc = run_main(["--config=qmix", "--env-config=matrix", "with", "lr=1e6", "grad_norm_clip=1e30",
                     "save_model=True", "save_model_interval=1"] + TINY, tmp_path, check=False)
    line = assert_diverged(proc, sacred_runs(tmp_path, "qmix", "matrix")[-1])
    assert "loss" in line and "lower lr or grad_norm_clip" in line
    files = glob.glob(os.path.join(str(tmp_path), "models", "*", "*", "*.th"))
    assert files, "the first cycle's checkpoint (before the divergence) is missing"
    for path in files:
        for tensor in _tensors(torch.load(path, weights_only=True)):
            assert torch.isfinite(tensor).all(), path


def _tensors(state):
    if torch.is_tensor(state):
        yield state
    elif isinstance(state, dict):
        for value in state.values():
            yield from _tensors(value)
    elif isinstance(state, (list, tuple)):
        for value in state:
            yield from _tensors(value)


@pytest.mark.subprocess
def test_mappo_diverging_stops_failed(tmp_path):
    # an entropy bonus of 1e38 overflows the actor's gradient norm on the first update
    proc = run_main(["--config=mappo", "--env-config=matrix", "with", "entropy_coef=1e38"] + TINY, tmp_path,
                    check=False)
    line = assert_diverged(proc, sacred_runs(tmp_path, "mappo", "matrix")[-1])
    assert "agent_grad_norm inf" in line and "lower lr, critic_lr or grad_norm_clip" in line


# MAZero on the matrix game with a tiny model and search
TINY_MAZERO = ["runner=episode", "batch_size_run=1", "batch_transitions=8", "num_simulations=3", "sampled_actions=3",
               "latent_dim=16", "representation_hidden=[16]", "dynamics_hidden=[16]", "attention_heads=2",
               "attention_ff_dim=16", "projection_hidden=16", "projection_dim=16", "predictor_hidden=8"]


@pytest.mark.subprocess
def test_mazero_diverging_stops_failed_and_keeps_every_checkpoint_finite(tmp_path):
    # used to stop with an internal message from the PER sampler or the search tree
    proc = run_main(["--config=mazero", "--env-config=matrix", "with", "lr=1e6", "grad_norm_clip=1e30",
                     "save_model=True", "save_model_interval=1"] + TINY_MAZERO + TINY, tmp_path, check=False)
    line = assert_diverged(proc, sacred_runs(tmp_path, "mazero", "matrix")[-1])
    assert "lower lr or grad_norm_clip" in line
    assert glob.glob(os.path.join(str(tmp_path), "models", "*", "*", "agent.th")), "no checkpoint before the update"
    for name in ("agent.th", "target_agent.th", "target_snapshot.th", "opt.th"):
        for path in glob.glob(os.path.join(str(tmp_path), "models", "*", "*", name)):
            for tensor in _tensors(torch.load(path, weights_only=True)):
                assert not tensor.is_floating_point() or torch.isfinite(tensor).all(), path


def write_record(root, run_id, status, returns, info=None, seed=1, loss=None):
    folder = os.path.join(root, "qmix", "matrix", run_id)
    os.makedirs(folder)
    metrics = {"test_return_mean": {"steps": [100, 200], "values": returns}}
    if loss is not None:
        metrics["loss"] = {"steps": [100, 200], "values": loss}
    for name, content in (("config.json", {"name": "qmix", "env": "matrix", "seed": seed, "t_max": 200,
                                           "env_args": {"game": "climbing"}}),
                          ("run.json", {"status": status, "start_time": "2026-12-01T08:00:00"}),
                          ("metrics.json", metrics), ("info.json", info or {})):
        with open(os.path.join(folder, name), "w") as f:
            f.write(json.dumps(content))


def test_results_never_count_a_diverged_run(tmp_path, capsys):
    root = str(tmp_path)
    write_record(root, "1", "COMPLETED", [5.0, 7.0], seed=1)
    write_record(root, "2", "FAILED", [11.0, 11.0], seed=2,
                 info={"diverged": {"t_env": 150, "message": "diverged at t_env 150: loss nan"}})
    # a record from before the check: COMPLETED, but its loss went NaN
    write_record(root, "3", "COMPLETED", [11.0, 11.0], seed=3, loss=[1.0, math.nan])
    assert results_main(["compare", "--root", root, "--include-incomplete", "--format", "json"]) == 0
    out = capsys.readouterr()
    compared = json.loads(out.out)
    assert "11" not in json.dumps(compared[0]["rows"]) and "7.0" in json.dumps(compared[0]["rows"])
    assert "diverged at t_env 150: loss nan (a diverged run is never counted" in out.out
    assert "diverged at t_env 200: loss nan" in out.out
    assert results_main(["list", "--root", root]) == 0
    listed = capsys.readouterr().out
    assert "FAILED (diverged at t_env 150)" in listed and "COMPLETED (diverged at t_env 200)" in listed
    assert "11.000" not in listed
