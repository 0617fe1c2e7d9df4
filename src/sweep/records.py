"""Exports a completed run's Sacred record to a records folder, one folder per run, resumed attempts stitched.

A resumed MAZero run is several Sacred records: each attempt up to its kill, then the attempt that resumed from its
last checkpoint. Resume is exact (docs/mazero.md), so the run's curves are the first attempt's up to the
checkpoint's t_env followed by the next attempt's; the export writes that one record:

    <records>/<run name>/config.json, run.json   the completing attempt's
    <records>/<run name>/metrics.json, info.json  every attempt's entries up to the t_env the next one resumed at
    <records>/<run name>/sweep.json               the command and each attempt's record, status, wall-clock

No checkpoints and no cout.txt: the folder is small enough to commit, and `python -m tools.results --root
<records>` reads it.
"""
import os
import shutil
import tempfile
from datetime import datetime

from sweep.run_folder import read_json, write_json


def _owner(attempts, sacred_id=None, token=None):
    """Index of the attempt whose outputs hold this Sacred record or checkpoint token."""
    for index, attempt in enumerate(attempts):
        if sacred_id in attempt.get("sacred_ids", []) or token in attempt.get("models", []):
            return index
    return None


def resolve_outputs(folder, attempts):
    """Fills each attempt's outputs that a killed sweep did not write: what appeared before the next began."""
    for index, attempt in enumerate(attempts):
        if "sacred_ids" in attempt:
            continue
        if index + 1 < len(attempts):
            later = attempts[index + 1]
            attempt.update(folder.attempt_outputs(attempt, later["sacred_before"], later["models_before"]))
        else:
            attempt.update(folder.attempt_outputs(attempt, folder.sacred_ids(), folder.model_tokens()))
    return attempts


def resume_chain(folder, completed_id):
    """[(sacred id, attempt or None, last t_env kept or None = all)], first attempt first."""
    attempts = resolve_outputs(folder, folder.ledger()["attempts"])
    index = _owner(attempts, sacred_id=completed_id)
    chain = [(completed_id, attempts[index] if index is not None else None, None)]
    while index is not None and attempts[index].get("resumed_from"):
        resumed_from = attempts[index]["resumed_from"]
        index = _owner(attempts, token=os.path.basename(resumed_from["checkpoint"]))
        if index is None or not attempts[index]["sacred_ids"]:
            raise ValueError(f"{folder.path}: no record of the attempt that wrote {resumed_from['checkpoint']}")
        chain.insert(0, (attempts[index]["sacred_ids"][-1], attempts[index], resumed_from["t_env"]))
    return chain


def _cut_metrics(metrics, last_t):
    if last_t is None:
        return metrics
    kept = {}
    for name, series in metrics.items():
        keep = [i for i, step in enumerate(series["steps"]) if step <= last_t]
        kept[name] = {field: [series[field][i] for i in keep] for field in ("steps", "values", "timestamps")
                      if field in series}
    return kept


def _cut_info(info, last_t):
    """PyMARL's info.json: `key` values with `key_T` env steps; other entries are kept as they are."""
    if last_t is None:
        return info
    kept = dict(info)
    for key, steps in info.items():
        if key.endswith("_T") and key[:-2] in info and isinstance(steps, list):
            keep = [i for i, step in enumerate(steps) if step <= last_t]
            kept[key] = [steps[i] for i in keep]
            kept[key[:-2]] = [info[key[:-2]][i] for i in keep if i < len(info[key[:-2]])]
    return kept


def _append(merged, part):
    """Concatenates list-valued entries (metric series, info lists); other entries: the later part wins."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            _append(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def _attempt_summary(folder, sacred_id, attempt, last_t):
    run = read_json(os.path.join(folder.record(sacred_id), "run.json")) or {}
    summary = {"sacred_record": sacred_id, "status": run.get("status", "UNKNOWN"),
               "start_time": run.get("start_time"), "stop_time": run.get("stop_time"),
               "heartbeat": run.get("heartbeat"), "kept_up_to_t_env": last_t}
    summary["resumed_from_t_env"] = ((attempt or {}).get("resumed_from") or {}).get("t_env")
    end = summary["stop_time"] or summary["heartbeat"]  # a killed run's last heartbeat (Sacred: every 10 s)
    if summary["start_time"] and end:
        seconds = datetime.fromisoformat(end) - datetime.fromisoformat(summary["start_time"])
        summary["wall_clock_seconds"] = round(seconds.total_seconds(), 1)
    return summary


def portable(value, run_folder, run_name):
    """A JSON value (dicts, lists, strings) with this machine's path of the run's sweep folder, under which its
    results and checkpoints live, replaced by the run's name."""
    if isinstance(value, str):
        return value.replace(run_folder, run_name)
    if isinstance(value, list):
        return [portable(item, run_folder, run_name) for item in value]
    if isinstance(value, dict):
        return {key: portable(item, run_folder, run_name) for key, item in value.items()}
    return value


def portable_run(run, run_folder, run_name):
    """Sacred's run.json without this machine's paths: the run's folder by its name, the source folder relative to
    the checkout, and the repository by its commit and dirty flag only (Sacred's `url` is the checkout's path)."""
    run = portable(run, run_folder, run_name)
    experiment = run.get("experiment", {})
    if "base_dir" in experiment:
        experiment["base_dir"] = "src"
    for repository in experiment.get("repositories", []):
        repository.pop("url", None)
    return run


def portable_command(command, run_folder, run_name):
    """The run's argv without this machine's paths: `python src/main.py ...`, the run's folder by its name."""
    if not command:
        return command
    return ["python", "src/main.py"] + portable(command[2:], run_folder, run_name)


def _write_record(records_dir, run_name, files):
    """Writes <records_dir>/<run_name>/ holding `files` ({file name: JSON value}) atomically; returns its path."""
    os.makedirs(records_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{run_name}-", dir=records_dir)
    for name, value in files.items():
        write_json(os.path.join(tmp, name), value)
    target = os.path.join(records_dir, run_name)
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.rename(tmp, target)
    return target


def portable_files(record, run_folder, run_name):
    """One Sacred record's config.json and run.json without this machine's paths: `run_folder` (the run's
    local_results_path, under which its checkpoints live too) by `run_name`."""
    # local_results_path, and checkpoint_path of a resumed run, name the run's folder
    return {"config.json": portable(read_json(os.path.join(record, "config.json")) or {}, run_folder, run_name),
            "run.json": portable_run(read_json(os.path.join(record, "run.json")) or {}, run_folder, run_name)}


def export_single_record(record, records_dir, run_name, run_folder):
    """Writes <records_dir>/<run_name>/ from one Sacred record (a run outside a sweep: config.json, run.json,
    metrics.json, info.json, no sweep.json); `run_folder` is its local_results_path. Returns its path."""
    files = portable_files(record, run_folder, run_name)
    for name in ("metrics.json", "info.json"):
        files[name] = read_json(os.path.join(record, name)) or {}
    return _write_record(records_dir, run_name, files)


def export_record(folder, completed_id, records_dir, run_name):
    """Writes <records_dir>/<run_name>/ from the run's resume chain (atomically); returns its path."""
    chain = resume_chain(folder, completed_id)
    metrics, info = {}, {}
    for sacred_id, _, last_t in chain:
        record = folder.record(sacred_id)
        _append(metrics, _cut_metrics(read_json(os.path.join(record, "metrics.json")) or {}, last_t))
        _append(info, _cut_info(read_json(os.path.join(record, "info.json")) or {}, last_t))
    attempts = [_attempt_summary(folder, *link) for link in chain]
    wall = [a["wall_clock_seconds"] for a in attempts if "wall_clock_seconds" in a]
    files = portable_files(folder.record(completed_id), folder.path, run_name)
    files.update({"metrics.json": metrics, "info.json": info, "sweep.json": {
        "run": run_name, "command": portable_command(folder.ledger().get("command"), folder.path, run_name),
        "attempts": attempts,
        "wall_clock_seconds": round(sum(wall), 1) if len(wall) == len(attempts) else None}})
    return _write_record(records_dir, run_name, files)
