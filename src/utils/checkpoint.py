"""Checkpoint directories: results/models/<unique_token>/<t_env>/, written atomically, checked before loading.

`save_checkpoint` lets the learner write into a hidden temporary sibling directory and renames it into place, so a
run killed mid-save never leaves a half-written `<t_env>` directory; `find_checkpoint` only looks at directories
whose name is an integer, so leftover temporary directories are ignored. With `keep`, older checkpoints are
deleted only once the new one is in place (each is first renamed to a hidden name, so a kill mid-delete never
leaves a partial `<t_env>` directory behind).

Each checkpoint holds `checkpoint.json`: the size of every file in it (a truncated or missing file is found
before torch reads it) and what it was trained on (utils.run_identity.trained_on). `load_checkpoint` refuses, in
one line, a checkpoint made for another env, map, agent count or algorithm, and skips a damaged one with a warning
for the next older loadable one. Checkpoints from before `checkpoint.json` load unchecked.

Every file is read with `load_state`: torch.load(weights_only=True), which builds tensors, numbers, strings and
plain containers only, so a shared checkpoint cannot run code when it is opened (a pickle can). Allowed besides
those: numpy arrays (the replay's arrays, numpy's RNG state) and the types a caller names.
"""
import errno
import json
import os
import pickle
import shutil
import tempfile

import numpy as np
import torch

from utils.run_identity import mismatch

MANIFEST = "checkpoint.json"


class CheckpointError(Exception):
    """No loadable checkpoint, or one made for another run; the message is one line naming the path."""


class DiskFullError(CheckpointError):
    """The file system ran out of space while a checkpoint was written; the message names the folder."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file that holds objects other than tensors, numbers, strings, containers and allowed types."""


# what a numpy array of numbers unpickles through: the reconstruct function, the array type, np.dtype and the dtype
# classes of booleans, integers and floats (no object dtype: its elements would be arbitrary pickles)
NUMPY_ARRAY_TYPES = (np._core.multiarray._reconstruct, np.ndarray, np.dtype,
                     *(type(np.dtype(code)) for code in "?bBhHiIlLqQefd"))


def refused_global(exc):
    """What torch's weights_only error says was refused ('Unsupported global: GLOBAL posix.system ...'), without
    the general advice around it."""
    lines = [line.strip() for line in str(exc).splitlines()]
    for line in lines:
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(" Please use", 1)[0].strip()[:300]
    for line in lines:
        if "unsupported global" in line.lower():
            return line[:300]
    return first_line(exc)


def refused(exc):
    """True when exc is torch's weights_only loader refusing a type (not a damaged file, which it reports as an
    UnpicklingError too)."""
    text = str(exc).lower()
    return isinstance(exc, pickle.UnpicklingError) and ("global" in text or "allowlisted" in text)


def unsafe(what, exc):
    """The one-line refusal of a file (or checkpoint folder) that torch's weights_only loader refused with exc."""
    return (f"refusing to load {what}: it holds objects other than tensors, numbers and containers "
            f"({refused_global(exc)}); unpickling them could run code (docs/harness.md, Checkpoints)")


def load_state(path, allowed=()):
    """torch.load(path) on the CPU with weights_only=True, numpy arrays and the `allowed` types (classes whose
    instances the file may hold, e.g. dataclasses of tensors) allowed besides tensors and plain containers.
    Raises UnsafeCheckpointError naming the file and the refused global when it holds anything else."""
    try:
        with torch.serialization.safe_globals([*NUMPY_ARRAY_TYPES, *allowed]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not refused(exc):
            raise
        raise UnsafeCheckpointError(unsafe(path, exc)) from None


def save_checkpoint(models_dir, t_env, save_fn, keep=None, trained_on=None):
    """Calls save_fn(tmp_dir), adds checkpoint.json and renames tmp_dir to models_dir/<t_env>; returns the path.

    keep: if given, only the `keep` latest checkpoints under models_dir remain afterwards.
    trained_on: the run_identity.trained_on record stored in checkpoint.json.
    """
    os.makedirs(models_dir, exist_ok=True)
    final_path = os.path.join(models_dir, str(int(t_env)))
    tmp_path = tempfile.mkdtemp(prefix=f".tmp-{int(t_env)}-", dir=models_dir)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o777 & ~umask)  # mkdtemp makes it owner-only; a checkpoint gets normal folder permissions
    try:
        save_fn(tmp_path)
        write_manifest(tmp_path, t_env, trained_on)
        if os.path.isdir(final_path):  # same t_env saved before (e.g. a resumed run): keep the newest
            shutil.rmtree(final_path)
        os.rename(tmp_path, final_path)
    except BaseException as exc:
        full = disk_full(exc, models_dir)
        shutil.rmtree(tmp_path, ignore_errors=True)  # frees the space the Sacred record needs to end FAILED
        if full:
            raise DiskFullError(f"disk full: cannot write checkpoint {final_path} ({first_line(exc)}); free space "
                                f"on that file system or set local_results_path elsewhere") from None
        raise
    if keep is not None:
        for step in list_checkpoints(models_dir)[:-keep]:
            doomed = tempfile.mkdtemp(prefix=f".old-{step}-", dir=models_dir)
            os.rename(os.path.join(models_dir, str(step)), os.path.join(doomed, str(step)))
            shutil.rmtree(doomed)
    return final_path


# below this many free bytes a failed write counts as a full disk (torch's zip writer reports ENOSPC as
# "unexpected pos ...", a RuntimeError without errno)
DISK_FULL_FREE_BYTES = 1 << 20


def disk_full(exc, folder):
    """True when `exc` (raised while writing into folder) is ENOSPC or came with the folder's disk (nearly) full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, (OSError, RuntimeError)):
        return False
    try:
        return shutil.disk_usage(folder).free < DISK_FULL_FREE_BYTES
    except OSError:
        return False


def list_checkpoints(checkpoint_path):
    """Sorted t_env values of the complete checkpoints under checkpoint_path."""
    if not os.path.isdir(checkpoint_path):
        raise FileNotFoundError(f"checkpoint_path {checkpoint_path!r} is not a directory")
    steps = []
    for name in os.listdir(checkpoint_path):
        if name.isdigit() and os.path.isdir(os.path.join(checkpoint_path, name)):
            steps.append(int(name))
    return sorted(steps)


def write_manifest(path, t_env, trained_on):
    """checkpoint.json: t_env, the trained_on record and the size of every file save_fn wrote."""
    files = {}
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            files[os.path.relpath(full, path)] = os.path.getsize(full)
    with open(os.path.join(path, MANIFEST), "w") as f:
        json.dump({"t_env": int(t_env), "trained_on": trained_on, "files": files}, f, indent=1)


def read_manifest(path):
    """checkpoint.json of the checkpoint at `path` as a dict; {} for checkpoints written before it existed."""
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.exists(manifest_path):
        return {}
    try:
        with open(manifest_path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        return {"damaged": f"{MANIFEST} unreadable ({exc})"}


def damage(path, manifest):
    """None when every file listed in the manifest is present with its recorded size, else what is wrong."""
    if "damaged" in manifest:
        return manifest["damaged"]
    for name, size in manifest.get("files", {}).items():
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            return f"{name} is missing"
        if os.path.getsize(full) != size:
            return f"{name} has {os.path.getsize(full)} bytes, {size} were saved"
    return None


def candidates(checkpoint_path, load_step=0):
    """(path, t_env) of every checkpoint, preferred first: newest first for load_step 0, else closest first."""
    steps = list_checkpoints(checkpoint_path)
    if not steps:
        raise FileNotFoundError(
            f"no checkpoint under {checkpoint_path!r}: expected sub-directories named by t_env "
            f"(results/models/<unique_token>/<t_env>/)"
        )
    if load_step == 0:
        order = sorted(steps, reverse=True)
    else:  # closest first; of two equally close, the older
        order = sorted(steps, key=lambda s: (abs(s - load_step), s))
    return [(os.path.join(checkpoint_path, str(step)), step) for step in order]


def find_checkpoint(checkpoint_path, load_step=0):
    """(path, t_env) of the checkpoint to load: the latest for load_step 0, else the one closest to load_step;
    checkpoints whose files do not match their checkpoint.json are passed over."""
    damaged = []
    for path, step in candidates(checkpoint_path, load_step):
        problem = damage(path, read_manifest(path))
        if problem is None:
            return path, step
        damaged.append(f"{path}: {problem}")
    raise FileNotFoundError(f"no complete checkpoint under {checkpoint_path!r}: {'; '.join(damaged)}")


def first_line(exc):
    """`Type: message` of an exception on one line (torch's load errors span several)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:300]}"


def load_checkpoint(checkpoint_path, load_step, load_fn, trained_on, log):
    """Calls load_fn(path) on the preferred checkpoint (see `candidates`) that is complete and loads; returns
    (path, t_env). A damaged checkpoint, or one whose load_fn raises, is named in a warning (log.warning) and the
    next one is tried. Raises CheckpointError when a checkpoint was trained on something else than `trained_on`
    (one line saying what differs) or when none loads."""
    try:
        ordered = candidates(checkpoint_path, load_step)
    except FileNotFoundError as exc:
        raise CheckpointError(str(exc)) from None
    failures = []
    for path, step in ordered:
        manifest = read_manifest(path)
        recorded = manifest.get("trained_on")
        reason = mismatch(recorded, trained_on) if recorded and trained_on else None
        if reason:
            raise CheckpointError(f"checkpoint {path} does not fit this run: {reason}")
        problem = damage(path, manifest)
        if problem is None:
            log.info(f"Loading models from {path}")
            try:
                load_fn(path)
                return path, step
            except UnsafeCheckpointError:
                raise  # a planted file: never fall back to another checkpoint of the same folder silently
            except Exception as exc:  # torch's zip, pickle and size-mismatch errors, a missing file, ...
                problem = first_line(exc)
        failures.append(f"{path}: {problem}")
        log.warning(f"checkpoint {path} cannot be loaded ({problem}); trying the next one")
    raise CheckpointError(f"no checkpoint under {checkpoint_path!r} could be loaded: {failures[0]}"
                          + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))
