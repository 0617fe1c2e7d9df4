"""One run's results folder inside the sweep folder: its Sacred records, checkpoints, ledger and lock.

    <sweep_dir>/<run name>/
        sacred/<name>/<map>/<id>/   Sacred records (main.py's FileStorageObserver under local_results_path)
        models/<unique_token>/<t_env>/   checkpoints
        sweep.json                  the ledger: the run's command and one entry per attempt
        stdout.txt, stderr.txt      the output of every attempt, appended
"""
import fcntl
import glob
import json
import os
import time
from datetime import datetime, timezone

from utils.checkpoint import list_checkpoints

LEDGER = "sweep.json"
LOCK = ".sweep.lock"


def read_json(path):
    """The JSON in path, or None when it is missing or unreadable (a run killed mid-write)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, content):
    """Writes atomically (temporary file, then rename), so a killed sweep never leaves half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


class RunFolder:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.lock_file = None

    def sacred_ids(self):
        """Sacred record folders, as paths relative to sacred/ ('mazero_cpu/3m/2'), oldest first."""
        runs = glob.glob(os.path.join(self.path, "sacred", "*", "*", "[0-9]*"))
        runs = [run for run in runs if os.path.basename(run).isdigit()]
        runs.sort(key=lambda run: (os.path.dirname(run), int(os.path.basename(run))))
        return [os.path.relpath(run, os.path.join(self.path, "sacred")) for run in runs]

    def record(self, sacred_id):
        return os.path.join(self.path, "sacred", sacred_id)

    def status(self, sacred_id):
        run = read_json(os.path.join(self.record(sacred_id), "run.json")) or {}
        return run.get("status", "UNKNOWN")

    def completed_id(self):
        """The newest COMPLETED Sacred record, or None."""
        done = [sacred_id for sacred_id in self.sacred_ids() if self.status(sacred_id) == "COMPLETED"]
        return done[-1] if done else None

    def model_tokens(self):
        models = os.path.join(self.path, "models")
        return sorted(os.listdir(models)) if os.path.isdir(models) else []

    def heartbeat_windows(self):
        """(start, last heartbeat) of each Sacred record, UTC: the time its metrics.json covers."""
        windows = []
        for sacred_id in self.sacred_ids():
            run = read_json(os.path.join(self.record(sacred_id), "run.json")) or {}
            if run.get("start_time") and run.get("heartbeat"):
                windows.append((datetime.fromisoformat(run["start_time"]), datetime.fromisoformat(run["heartbeat"])))
        return windows

    def records_complete_to(self):
        """{checkpoint token: t_env} from the records' info.json: the run with that unique_token wrote every metric
        up to that t_env before writing its checkpoint there (utils.logging.Logger.flush_records)."""
        complete = {}
        for sacred_id in self.sacred_ids():
            info = read_json(os.path.join(self.record(sacred_id), "info.json")) or {}
            token, t_env = info.get("unique_token"), info.get("record_complete_to")
            if isinstance(token, str) and isinstance(t_env, int):
                complete[token] = max(t_env, complete.get(token, t_env))
        return complete

    def resume_checkpoint(self):
        """(models/<token> folder, t_env) of the newest checkpoint whose metrics reached disk, or None.

        The run writes its record before each checkpoint and notes that in info.json (`record_complete_to`), so
        every checkpoint of such a run qualifies. For runs from before that note, Sacred wrote metrics.json only at
        each heartbeat (every 10 s by default), so a killed run's record ends at its last heartbeat: only a
        checkpoint written inside some record's (start, last heartbeat) window has every metric up to its t_env on
        disk. Tokens are listed, not rebuilt: each attempt has its own folder.
        """
        windows = self.heartbeat_windows()
        complete = self.records_complete_to()
        best = None
        for token in self.model_tokens():
            folder = os.path.join(self.path, "models", token)
            for step in list_checkpoints(folder) if os.path.isdir(folder) else []:
                written = _utc_mtime(os.path.join(folder, str(step)))
                usable = step <= complete.get(token, -1) or any(start <= written <= beat for start, beat in windows)
                if usable and (best is None or step > best[1]):
                    best = (folder, step)
        return best

    def has_checkpoints(self):
        models = os.path.join(self.path, "models")
        return any(list_checkpoints(os.path.join(models, token)) for token in self.model_tokens()
                   if os.path.isdir(os.path.join(models, token)))

    def ledger(self):
        return read_json(os.path.join(self.path, LEDGER)) or {"attempts": []}

    def save_ledger(self, ledger):
        write_json(os.path.join(self.path, LEDGER), ledger)

    def begin_attempt(self, command, resumed_from):
        """Appends an attempt to the ledger; what exists now is not the attempt's (see attempt_outputs)."""
        ledger = self.ledger()
        ledger["command"] = command
        ledger["attempts"].append({"started": time.time(), "command": command, "resumed_from": resumed_from,
                                   "sacred_before": self.sacred_ids(), "models_before": self.model_tokens()})
        self.save_ledger(ledger)
        return ledger

    def end_attempt(self, ledger, exit_code):
        attempt = ledger["attempts"][-1]
        attempt.update(ended=time.time(), exit_code=exit_code)
        attempt.update(self.attempt_outputs(attempt, self.sacred_ids(), self.model_tokens()))
        self.save_ledger(ledger)

    @staticmethod
    def attempt_outputs(attempt, sacred_now, models_now):
        """The Sacred records and checkpoint tokens that appeared during the attempt."""
        return {"sacred_ids": [s for s in sacred_now if s not in attempt["sacred_before"]],
                "models": [m for m in models_now if m not in attempt["models_before"]]}

    def lock(self):
        """Takes the folder's lock; False when another sweep process, or a run started by one (the run's process
        inherits the lock, see `lock_fd`), is running this run right now."""
        os.makedirs(self.path, exist_ok=True)
        self.lock_file = open(os.path.join(self.path, LOCK), "a+")
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.unlock()
            return False
        self.note_lock_holder(f"sweep pid {os.getpid()}")
        return True

    def note_lock_holder(self, text):
        """Writes who holds the lock into the lock file (read back by `lock_holder` for the skip message)."""
        self.lock_file.seek(0)
        self.lock_file.truncate()
        self.lock_file.write(text + "\n")
        self.lock_file.flush()

    def lock_fd(self):
        """The lock's file descriptor: a run process started with it open holds the lock until it exits, so a
        sweep that was killed cannot have its still-running runs resumed a second time by the next sweep."""
        return self.lock_file.fileno()

    def lock_holder(self):
        """Who holds the lock, as written by the holder ('sweep pid 12, run pid 34'), or '' if unknown."""
        try:
            with open(os.path.join(self.path, LOCK)) as f:
                return f.read().strip()
        except OSError:
            return ""

    def unlock(self):
        if self.lock_file is not None:
            self.lock_file.close()  # closing releases the flock
            self.lock_file = None

    def output_offsets(self):
        return {stream: _size(os.path.join(self.path, f"{stream}.txt")) for stream in ("stdout", "stderr")}

    def stderr_tail(self, offset, lines=6):
        """The last non-empty lines this attempt wrote to stderr (from byte `offset` on)."""
        try:
            with open(os.path.join(self.path, "stderr.txt"), "rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]


def _utc_mtime(path):
    """A file's modification time as a naive UTC datetime (Sacred's run.json times are utcnow())."""
    return datetime.fromtimestamp(os.path.getmtime(path), timezone.utc).replace(tzinfo=None)


def _size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0
