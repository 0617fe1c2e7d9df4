"""Checkpoint directories: results/models/<unique_token>/<t_env>/, written atomically.

`save_checkpoint` lets the learner write into a hidden temporary sibling directory and renames it into place, so a
run killed mid-save never leaves a half-written `<t_env>` directory; `find_checkpoint` only looks at directories
whose name is an integer, so leftover temporary directories are ignored. With `keep`, older checkpoints are
deleted only once the new one is in place (each is first renamed to a hidden name, so a kill mid-delete never
leaves a partial `<t_env>` directory behind).
"""
import os
import shutil
import tempfile


def save_checkpoint(models_dir, t_env, save_fn, keep=None):
    """Calls save_fn(tmp_dir) and renames tmp_dir to models_dir/<t_env>; returns the final path.

    keep: if given, only the `keep` latest checkpoints under models_dir remain afterwards.
    """
    os.makedirs(models_dir, exist_ok=True)
    final_path = os.path.join(models_dir, str(int(t_env)))
    tmp_path = tempfile.mkdtemp(prefix=f".tmp-{int(t_env)}-", dir=models_dir)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o777 & ~umask)  # mkdtemp makes it owner-only; a checkpoint gets normal folder permissions
    try:
        save_fn(tmp_path)
        if os.path.isdir(final_path):  # same t_env saved before (e.g. a resumed run): keep the newest
            shutil.rmtree(final_path)
        os.rename(tmp_path, final_path)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise
    if keep is not None:
        for step in list_checkpoints(models_dir)[:-keep]:
            doomed = tempfile.mkdtemp(prefix=f".old-{step}-", dir=models_dir)
            os.rename(os.path.join(models_dir, str(step)), os.path.join(doomed, str(step)))
            shutil.rmtree(doomed)
    return final_path


def list_checkpoints(checkpoint_path):
    """Sorted t_env values of the complete checkpoints under checkpoint_path."""
    if not os.path.isdir(checkpoint_path):
        raise FileNotFoundError(f"checkpoint_path {checkpoint_path!r} is not a directory")
    steps = []
    for name in os.listdir(checkpoint_path):
        if name.isdigit() and os.path.isdir(os.path.join(checkpoint_path, name)):
            steps.append(int(name))
    return sorted(steps)


def find_checkpoint(checkpoint_path, load_step=0):
    """(path, t_env) of the checkpoint to load: the latest for load_step 0, else the one closest to load_step."""
    steps = list_checkpoints(checkpoint_path)
    if not steps:
        raise FileNotFoundError(
            f"no checkpoint under {checkpoint_path!r}: expected sub-directories named by t_env "
            f"(results/models/<unique_token>/<t_env>/)"
        )
    step = max(steps) if load_step == 0 else min(steps, key=lambda s: abs(s - load_step))
    return os.path.join(checkpoint_path, str(step)), step
