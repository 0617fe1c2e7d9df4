"""The seed-sweep runner (src/sweep): grid expansion and checks, what each run needs, the records export, and a
2-config x 2-seed sweep with two workers that skips completed runs and resumes a killed MAZero run."""
import glob
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
import yaml

from sweep.cli import main as sweep_main
from sweep.grid import GridError, RunSpec, load_grid, with_value
from sweep.launch import Launcher, config_mismatches, plan_run
from sweep.records import export_record, export_single_record
from sweep.run_folder import RunFolder

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(REPO_ROOT, "src", "sweep")
TINY_MAZERO = dict(num_simulations=2, sampled_actions=2, batch_transitions=8, save_model=True, save_model_interval=20,
                   latent_dim=16, representation_hidden=[16], dynamics_hidden=[16], attention_layers=1,
                   attention_heads=2, attention_ff_dim=16, projection_hidden=16, projection_dim=16,
                   predictor_hidden=8)
TINY_GRID = {"configs": ["mazero_cpu", "qmix"], "env_configs": ["matrix"], "seeds": [1, 2],
             "with": {"t_max": 60, "test_interval": 20, "test_nepisode": 2, "log_interval": 30,
                      "save_git_info": False, "runner": "episode", "batch_size_run": 1},
             "config_with": {"mazero_cpu": TINY_MAZERO, "qmix": {"batch_size": 8, "buffer_size": 16}}}


def write_grid(tmp_path, grid, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(grid))
    return str(path)


def fake_record(folder, sacred_id, status, config, metrics=None):
    record = os.path.join(folder.path, "sacred", sacred_id)
    os.makedirs(record)
    for name, content in (("run.json", {"status": status, "start_time": "2026-12-01T08:00:00",
                                        "heartbeat": "2026-12-01T08:01:40"}),
                          ("config.json", config), ("metrics.json", metrics or {}), ("info.json", {})):
        with open(os.path.join(record, name), "w") as f:
            json.dump(content, f)


def test_grid_expands_every_combination_with_its_updates(tmp_path):
    grid = {"configs": ["qmix", "mazero_cpu"], "env_configs": ["smax"], "maps": ["3m", "2s3z"], "seeds": [1, 2],
            "with": {"t_max": 5000, "test_nepisode": 8}, "config_with": {"qmix": {"t_max": 7000}},
            "variants": {"base": {}, "s16": {"test_nepisode": 4}}, "grid": {"gamma": [0.9, 0.99]}}
    specs = load_grid(write_grid(tmp_path, grid))
    assert len(specs) == 2 * 2 * 2 * 2 * 2
    by_name = {spec.name: spec for spec in specs}
    qmix = by_name["qmix_smax_2s3z_s16_gamma=0.99_seed2"]
    assert qmix.updates == {"t_max": 7000, "test_nepisode": 4, "gamma": 0.99, "env_args.map_name": "2s3z",
                            "seed": 2}
    assert not qmix.resumable and by_name["mazero_cpu_smax_3m_base_gamma=0.9_seed1"].resumable
    (tmp_path / "lr.yaml").write_text("configs: [qmix]\nenv_configs: [matrix]\nseeds: [1]\nwith: {lr: 5e-4}\n")
    assert load_grid(str(tmp_path / "lr.yaml"))[0].updates["lr"] == 0.0005  # PyYAML alone reads '5e-4'
    argv = qmix.command("python", "/r/q", checkpoint_path="/r/q/models/t", t_env=21)
    assert argv[2:5] == ["--config=qmix", "--env-config=smax", "with"]
    # load_step: the folder may hold a newer checkpoint, written after the last metrics reached disk
    assert argv[-4:] == ["seed=2", "local_results_path=/r/q", "checkpoint_path=/r/q/models/t", "load_step=21"]


@pytest.mark.parametrize("value, text", [("3m", "3m"), ("True", "'True'"), (True, "True"), (5e-4, "0.0005"),
                                         ([16, 16], "[16, 16]"), ("/a b/c", "/a b/c"), (None, "None")])
def test_with_values_read_back_as_written(value, text):
    assert with_value(value) == text


@pytest.mark.parametrize("change, message", [
    ({"sedes": [1]}, "unknown key(s) ['sedes']"),
    ({"configs": ["qmx"]}, "unknown config 'qmx'"),
    ({"seeds": "1"}, "`seeds` must be a non-empty list"),
    ({"with": {"t_maxx": 10}}, "run qmix_matrix_seed1: unknown config key(s) after `with`: 't_maxx'"),
    ({"with": {"seed": 3}}, "sets 'seed', which the sweep sets itself"),
    ({"grid": {"lr": 0.1}}, "grid.lr must be a non-empty list"),
    ({"config_with": {"vdn": {}}}, "`config_with` must map names listed in `configs`"),
    ({"grid": {"env_args.game": ["climbing", "climbing"]}}, "would share a results folder"),
])
def test_bad_grids_name_the_file_and_key(tmp_path, change, message):
    grid = {"configs": ["qmix"], "env_configs": ["matrix"], "seeds": [1], **change}
    path = write_grid(tmp_path, grid)
    with pytest.raises(GridError) as error:
        load_grid(path)
    assert path in str(error.value) and message in str(error.value)


def test_bad_grid_exits_2_before_running_anything(tmp_path, capsys):
    path = write_grid(tmp_path, {"configs": ["qmix"], "env_configs": ["matrix"], "seeds": [1],
                                 "with": {"mixing_embed": 8}})
    assert sweep_main([path, "--dir", str(tmp_path / "sweep")]) == 2
    assert "'mixing_embed' (did you mean 'mixing_embed_dim'?)" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "sweep")
    assert sweep_main([str(tmp_path / "missing.yaml")]) == 2


def set_mtime(path, hh_mm_ss):
    written = datetime.fromisoformat(f"2026-12-01T{hh_mm_ss}").replace(tzinfo=timezone.utc).timestamp()
    os.utime(path, (written, written))


def test_plan_skips_completed_resumes_mazero_restarts_others(tmp_path):
    spec = RunSpec("run", "mazero_cpu", "matrix", 1, {"seed": 1, "t_max": 60}, resumable=True)
    folder = RunFolder(tmp_path / "run")
    assert plan_run(spec, folder, None).action == "start"
    # killed: its record covers 08:00:00-08:01:40 (start to last heartbeat)
    fake_record(folder, "mazero_cpu/matrix/1", "RUNNING", {"seed": 1, "t_max": 60})
    for checkpoint, written in (("tok_a/21", "08:00:30"), ("tok_b/31", "08:01:00"), ("tok_b/41", "08:01:50"),
                                ("tok_b/.tmp-61-x", "08:01:00")):
        os.makedirs(os.path.join(folder.path, "models", checkpoint))
        set_mtime(os.path.join(folder.path, "models", checkpoint), written)
    plan = plan_run(spec, folder, None)  # 41 was saved after the last heartbeat: its metrics are lost
    assert (plan.action, plan.checkpoint, plan.t_env) == ("resume", os.path.join(folder.path, "models", "tok_b"), 31)
    assert spec.command("python", folder.path, plan.checkpoint, plan.t_env)[-1] == "load_step=31"  # not the newest
    for checkpoint in ("tok_a/21", "tok_b/31"):
        set_mtime(os.path.join(folder.path, "models", checkpoint), "08:02:00")
    assert "no checkpoint before its last Sacred heartbeat" in plan_run(spec, folder, None).detail
    spec.resumable = False
    assert plan_run(spec, folder, None).detail == "restarted after RUNNING attempt(s) (only MAZero runs resume)"
    fake_record(folder, "mazero_cpu/matrix/2", "COMPLETED", {"seed": 1, "t_max": 60})
    assert plan_run(spec, folder, None).action == "skip"
    spec.updates["t_max"] = 80
    plan = plan_run(spec, folder, None)
    assert plan.action == "conflict" and "t_max=60 (grid: 80)" in plan.detail


def test_config_mismatches_reads_dotted_keys():
    config = {"seed": 1, "env_args": {"map_name": "3m"}, "representation_hidden": [16]}
    assert config_mismatches(config, {"seed": 1, "env_args.map_name": "3m", "representation_hidden": [16]}) == []
    assert config_mismatches(config, {"env_args.map_name": "8m", "lr": 0.1}) == [
        "env_args.map_name='3m' (grid: '8m')", "lr=None (grid: 0.1)"]


def test_export_stitches_a_resumed_run_at_its_checkpoint(tmp_path):
    folder = RunFolder(tmp_path / "run")
    series = lambda steps: {"steps": steps, "values": [float(s) for s in steps], "timestamps": [0] * len(steps)}
    fake_record(folder, "m/matrix/1", "RUNNING", {"seed": 1}, {"test_return_mean": series([1, 21, 41])})
    fake_record(folder, "m/matrix/2", "COMPLETED", {"seed": 1}, {"test_return_mean": series([41, 61])})
    checkpoint = os.path.join(folder.path, "models", "tok_a")
    folder.save_ledger({"command": ["/opt/venv/bin/python3", str(tmp_path / "checkout" / "src" / "main.py"),
                                    "--config=m", "with", "seed=1", f"local_results_path={folder.path}",
                                    f"checkpoint_path={folder.path}/models"], "attempts": [
        {"started": 0, "sacred_before": [], "models_before": [], "resumed_from": None,
         "sacred_ids": ["m/matrix/1"], "models": ["tok_a"]},
        # the sweep was killed during this attempt: its outputs are resolved from the folder
        {"started": 1, "sacred_before": ["m/matrix/1"], "models_before": ["tok_a"],
         "resumed_from": {"checkpoint": checkpoint, "t_env": 21}}]})
    path = export_record(folder, "m/matrix/2", str(tmp_path / "records"), "run")
    with open(os.path.join(path, "metrics.json")) as f:
        assert json.load(f)["test_return_mean"]["steps"] == [1, 21, 41, 61]
    with open(os.path.join(path, "sweep.json")) as f:
        attempts = json.load(f)["attempts"]
    assert [(a["sacred_record"], a["kept_up_to_t_env"], a["resumed_from_t_env"]) for a in attempts] == [
        ("m/matrix/1", 21, None), ("m/matrix/2", None, 21)]
    assert attempts[0]["wall_clock_seconds"] == 100.0
    assert sorted(os.listdir(path)) == ["config.json", "info.json", "metrics.json", "run.json", "sweep.json"]


def test_dry_run_prints_each_command_and_starts_nothing(tmp_path, capsys):
    path = write_grid(tmp_path, TINY_GRID)
    assert sweep_main([path, "--dir", str(tmp_path / "sweep"), "--dry-run", "--only", "qmix"]) == 0
    out = capsys.readouterr().out
    assert "2 runs: 2 planned" in out
    assert f"local_results_path={tmp_path / 'sweep' / 'qmix_matrix_seed2'}" in out
    assert not os.path.exists(tmp_path / "sweep")


def run_process(run_dir):
    """Pid of the src/main.py process recording into run_dir."""
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if f"local_results_path={run_dir}".encode() in argv:
            return int(cmdline.split("/")[2])
    return None


def kill_after_checkpoint(run_dir, deadline, t_max):
    """SIGKILLs the run once a checkpoint past its first episode and before its last (t_env <= t_max) has its
    metrics on disk; returns its t_env."""
    folder = RunFolder(run_dir)
    while time.time() < deadline:
        checkpoint = folder.resume_checkpoint() if os.path.isdir(run_dir / "models") else None
        pid = run_process(run_dir)
        if pid and checkpoint and 1 < checkpoint[1] <= t_max:
            os.kill(pid, signal.SIGKILL)
            return checkpoint[1]
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint in {run_dir}")


@pytest.mark.subprocess
def test_sweep_two_workers_skips_completed_and_resumes_a_killed_mazero_run(tmp_path):
    # MAZero runs longer here, so that a checkpoint before its last one reaches the disk with its metrics (heartbeats
    # every 0.5 s) however fast the machine: killed at its end, the resumed run would have nothing left to run
    t_max = 160
    grid = dict(TINY_GRID, config_with=dict(TINY_GRID["config_with"], mazero_cpu=TINY_MAZERO | {"t_max": t_max}))
    grid, sweep_dir, records = write_grid(tmp_path, grid), tmp_path / "sweep", tmp_path / "records"
    command = [sys.executable, SWEEP, grid, "--workers", "2", "--dir", str(sweep_dir), "--records", str(records),
               "--beat-interval", "0.5"]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_dir = sweep_dir / "mazero_cpu_matrix_seed1"
    killed_at = kill_after_checkpoint(killed_dir, time.time() + 120, t_max)
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 1, out
    assert "failed      mazero_cpu_matrix_seed1" in out and "exit code -9" in out
    assert "4 runs: 3 completed, 1 failed" in out

    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    resumed_at = RunFolder(killed_dir).ledger()["attempts"][-1]["resumed_from"]["t_env"]
    assert resumed_at >= killed_at
    assert f"completed   mazero_cpu_matrix_seed1" in second.stdout
    assert f"resumed at t_env {resumed_at}" in second.stdout
    assert "4 runs: 1 completed, 3 skipped" in second.stdout
    assert f"Resumed at t_env {resumed_at}," in (killed_dir / "stderr.txt").read_text()

    with open(records / "mazero_cpu_matrix_seed1" / "sweep.json") as f:
        attempts = json.load(f)["attempts"]
    assert [a["status"] for a in attempts] == ["RUNNING", "COMPLETED"]  # SIGKILL: Sacred never noticed
    with open(records / "mazero_cpu_matrix_seed1" / "metrics.json") as f:
        steps = json.load(f)["test_return_mean"]["steps"]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[0] <= resumed_at < steps[-1]
    assert sorted(os.listdir(records)) == sorted(spec.name for spec in load_grid(grid))
    launcher = Launcher(sweep_dir, records)
    assert [launcher.dry_run(spec).result for spec in load_grid(grid)] == ["skipped"] * 4


def test_exported_records_hold_no_machine_paths(tmp_path):
    folder = RunFolder(str(tmp_path / "sweep" / "run"))
    fake_record(folder, "m/matrix/1", "COMPLETED", {"seed": 1, "local_results_path": folder.path,
                                                    "checkpoint_path": os.path.join(folder.path, "models", "tok")})
    run_file = os.path.join(folder.path, "sacred", "m/matrix/1", "run.json")
    with open(run_file) as f:
        run = json.load(f)
    run["meta"] = {"config_updates": {"local_results_path": folder.path},
                   "options": {"UPDATE": ["seed=1", f"local_results_path={folder.path}"]}}
    run["experiment"] = {"base_dir": str(tmp_path / "checkout" / "src"),
                         "repositories": [{"commit": "abc", "dirty": False, "url": str(tmp_path / "checkout")}]}
    with open(run_file, "w") as f:
        json.dump(run, f)
    folder.save_ledger({"command": ["/opt/venv/bin/python3", str(tmp_path / "checkout" / "src" / "main.py"),
                                    "--config=m", "with", "seed=1", f"local_results_path={folder.path}",
                                    f"checkpoint_path={folder.path}/models"], "attempts": [
        {"started": 0, "sacred_before": [], "models_before": [], "resumed_from": None,
         "sacred_ids": ["m/matrix/1"], "models": []}]})
    path = export_record(folder, "m/matrix/1", str(tmp_path / "records"), "run")
    for name in ("config.json", "run.json", "sweep.json"):
        with open(os.path.join(path, name)) as f:
            assert str(tmp_path) not in f.read(), name
    with open(os.path.join(path, "sweep.json")) as f:
        assert json.load(f)["command"] == ["python", "src/main.py", "--config=m", "with", "seed=1",
                                           "local_results_path=run", "checkpoint_path=run/models"]
    with open(os.path.join(path, "run.json")) as f:
        assert json.load(f)["experiment"]["repositories"] == [{"commit": "abc", "dirty": False}]
    with open(os.path.join(path, "config.json")) as f:  # a resumed run's checkpoint folder, by the run's name
        assert json.load(f)["checkpoint_path"] == os.path.join("run", "models", "tok")


def test_a_record_made_outside_a_sweep_is_exported_without_machine_paths(tmp_path):
    folder = RunFolder(str(tmp_path / "results" / "climbing_seed1"))  # a script's local_results_path
    metrics = {"test_return_mean": {"steps": [1, 501], "values": [0.75, 11.0]}}
    fake_record(folder, "m/matrix/1", "COMPLETED", {"seed": 1, "local_results_path": folder.path}, metrics)
    record = os.path.join(folder.path, "sacred", "m/matrix/1")
    with open(os.path.join(record, "run.json")) as f:
        run = json.load(f)
    run["experiment"] = {"base_dir": str(tmp_path / "checkout" / "src"),
                         "repositories": [{"commit": "abc", "dirty": False, "url": str(tmp_path / "checkout")}]}
    with open(os.path.join(record, "run.json"), "w") as f:
        json.dump(run, f)
    path = export_single_record(record, str(tmp_path / "records"), "climbing_seed1", folder.path)
    assert sorted(os.listdir(path)) == ["config.json", "info.json", "metrics.json", "run.json"]
    for name in ("config.json", "run.json"):
        with open(os.path.join(path, name)) as f:
            assert str(tmp_path) not in f.read(), name
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["local_results_path"] == "climbing_seed1"
    with open(os.path.join(path, "run.json")) as f:
        assert json.load(f)["experiment"] == {"base_dir": "src", "repositories": [{"commit": "abc", "dirty": False}]}
    with open(os.path.join(path, "metrics.json")) as f:
        assert json.load(f) == metrics


def test_bad_values_in_a_grid_are_refused_before_anything_runs(tmp_path):
    grid = dict(TINY_GRID, config_with={"mazero_cpu": TINY_MAZERO | {"use_os_lambda": "maybe"}})
    with pytest.raises(GridError, match="run mazero_cpu_matrix_seed1: config key 'use_os_lambda' must be a boolean"):
        load_grid(write_grid(tmp_path, grid))
    grid = dict(TINY_GRID, config_with={"qmix": {"gamma": 5}})
    with pytest.raises(GridError, match="run qmix_matrix_seed1: config key 'gamma' must be a real number"):
        load_grid(write_grid(tmp_path, grid))


def test_a_checkpoint_whose_record_was_written_first_is_resumed_from_however_late(tmp_path):
    # runs write their record before each checkpoint and note it (info.json record_complete_to)
    spec = RunSpec("run", "mazero_cpu", "matrix", 1, {"seed": 1, "t_max": 60}, resumable=True)
    folder = RunFolder(tmp_path / "run")
    fake_record(folder, "mazero_cpu/matrix/1", "RUNNING", {"seed": 1, "t_max": 60})
    with open(os.path.join(folder.record("mazero_cpu/matrix/1"), "info.json"), "w") as f:
        json.dump({"unique_token": "tok_b", "record_complete_to": 41}, f)
    for checkpoint, written in (("tok_b/31", "08:01:00"), ("tok_b/41", "08:01:50"), ("tok_c/51", "08:01:55")):
        os.makedirs(os.path.join(folder.path, "models", checkpoint))
        set_mtime(os.path.join(folder.path, "models", checkpoint), written)
    plan = plan_run(spec, folder, None)  # 41: after the last heartbeat, but its record was complete; 51: not
    assert (plan.action, plan.checkpoint, plan.t_env) == ("resume", os.path.join(folder.path, "models", "tok_b"), 41)
