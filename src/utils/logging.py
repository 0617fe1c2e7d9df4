"""Logger: console summaries, Sacred (info.json and metrics.json), TensorBoard, Weights & Biases, and a progress
bar over t_env.

Every value is converted to a Python float before it reaches Sacred, so info.json and metrics.json hold plain
numbers (numpy scalars would be stored as jsonpickle objects).
"""
import logging
import os
import shutil
import sys
from collections import defaultdict, deque

# Read at import, before Sacred's output capturing replaces the process's stdout.
STDOUT_IS_TTY = sys.stdout.isatty()

RECENT_WINDOW = 5  # values kept per stat (the console prints the latest; MAZero checkpoints save them)
PROGRESS_KEYS = (("test_battle_won_mean", "test win"), ("test_return_mean", "test return"))
WANDB_MODES = ("offline", "online")


def _to_float(value):
    if hasattr(value, "item"):  # torch tensors, numpy scalars and 1-element arrays
        value = value.item()
    return float(value)


class Logger:
    def __init__(self, console_logger):
        self.console_logger = console_logger
        self.stats = defaultdict(lambda: deque(maxlen=RECENT_WINDOW))
        self.sacred_run = None
        self.tb_writer = None
        self.wandb_run = None
        self._wandb_save_model = False
        self._wandb_t = None  # W&B gets one row per t_env: the stats logged at the same t_env are sent together
        self._wandb_row = {}
        self.progress = None
        self._progress_postfix = {}

    def setup_tb(self, directory):
        from torch.utils.tensorboard import SummaryWriter

        self.tb_writer = SummaryWriter(log_dir=directory)

    def setup_wandb(self, config, directory):
        """Starts a W&B run in `directory` (its files go to directory/wandb/) with the run's config; the keys are
        EPyMARL's use_wandb, wandb_team, wandb_project, wandb_mode. Stats are logged against t_env."""
        mode = config["wandb_mode"]
        if mode not in WANDB_MODES:
            raise SystemExit(f"ERROR: wandb_mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        try:
            import wandb
        except ImportError:
            raise SystemExit("ERROR: use_wandb=True needs the wandb package: `pip install wandb` (or run with "
                             "use_wandb=False)") from None
        os.makedirs(directory, exist_ok=True)
        env_args = config.get("env_args") or {}
        group = f"{config['name']}_{env_args.get('map_name') or env_args.get('key') or config['env']}"
        self.wandb_run = wandb.init(entity=config["wandb_team"], project=config["wandb_project"], mode=mode,
                                    dir=directory, config=config, name=config.get("unique_token"), group=group)
        self._wandb_save_model = bool(config["wandb_save_model"])
        self.wandb_run.define_metric("t_env")
        self.wandb_run.define_metric("*", step_metric="t_env")
        self.console_logger.info(f"W&B run {self.wandb_run.id} ({mode}) in {self.wandb_run.dir}")

    def save_to_wandb(self, checkpoint_dir, t_env):
        """With wandb_save_model: copies a checkpoint folder into the W&B run's files (models/<t_env>/), which W&B
        uploads with the run."""
        if self.wandb_run is not None and self._wandb_save_model:
            shutil.copytree(checkpoint_dir, os.path.join(self.wandb_run.dir, "models", str(t_env)), dirs_exist_ok=True)

    def _log_wandb(self, key, value, t):
        if self._wandb_t is not None and t != self._wandb_t:
            self._flush_wandb()
        self._wandb_t = t
        self._wandb_row[key] = value

    def _flush_wandb(self):
        if self._wandb_row:
            self.wandb_run.log(dict(self._wandb_row, t_env=self._wandb_t))
            self._wandb_row = {}

    def setup_sacred(self, sacred_run):
        self.sacred_run = sacred_run

    def record_identity(self, unique_token, resumed_from=None):
        """Names the run in its Sacred record (info.json `unique_token`, the name of its checkpoint folder) and,
        for a run resumed from a checkpoint, the run it continues (`resumed_from`: that run's unique_token, the
        checkpoint folder and its t_env), so the results tool can join the attempts into one record."""
        if self.sacred_run is not None:
            self.sacred_run.info["unique_token"] = unique_token
            if resumed_from is not None:
                self.sacred_run.info["resumed_from"] = resumed_from

    def flush_records(self, checkpoint_t_env):
        """Writes the metrics logged so far to the Sacred record now, not at the next heartbeat (Sacred writes
        every 10 s), with info `record_complete_to` = checkpoint_t_env: run before the checkpoint at that t_env is
        written, so a killed run's record reaches it and says so (the sweep resumes from such checkpoints). Sacred
        has no public call for it; stand-ins without a heartbeat (tests) have nothing to write."""
        if self.sacred_run is None:
            return
        self.sacred_run.info["record_complete_to"] = int(checkpoint_t_env)
        emit_heartbeat = getattr(self.sacred_run, "_emit_heartbeat", None)
        if emit_heartbeat is not None:
            emit_heartbeat()

    def record_divergence(self, t_env, message):
        """Marks the Sacred record as diverged (info.json `diverged`: t_env and the one-line message), so the
        results tool can tell a diverged run from one that crashed."""
        if self.sacred_run is not None:
            self.sacred_run.info["diverged"] = {"t_env": int(t_env), "message": message}

    def setup_progress(self, t_max, t_start=0):
        """A tqdm bar over t_env with ETA and the last test score; only when stdout is a terminal."""
        if not STDOUT_IS_TTY:
            return
        from tqdm import tqdm

        self.progress = tqdm(total=t_max, initial=min(t_start, t_max), unit="step", unit_scale=True,
                             dynamic_ncols=True, desc="t_env")

    def update_progress(self, t_env):
        if self.progress is not None:
            self.progress.update(max(0, min(t_env, self.progress.total) - self.progress.n))

    def log_stat(self, key, value, t, to_sacred=True):
        value = _to_float(value)
        t = int(t)
        self.stats[key].append((t, value))
        if self.tb_writer is not None:
            self.tb_writer.add_scalar(key, value, t)
        if self.wandb_run is not None:
            self._log_wandb(key, value, t)
        if self.sacred_run is not None and to_sacred:
            info = self.sacred_run.info
            info.setdefault(key, []).append(value)
            info.setdefault(f"{key}_T", []).append(t)
            self.sacred_run.log_scalar(key, value, t)
        if self.progress is not None:
            for progress_key, label in PROGRESS_KEYS:
                if key == progress_key:
                    self._progress_postfix[label] = f"{value:.3g}"
                    self.progress.set_postfix(self._progress_postfix, refresh=False)

    def state_dict(self):
        """The recent-stats window the console prints from, for an exact resume."""
        return {"recent_stats": {key: list(values) for key, values in self.stats.items()}}

    def load_state_dict(self, state):
        for key, values in state["recent_stats"].items():
            self.stats[key].extend(values)

    def print_recent_stats(self):
        """Console summary: each stat's latest logged value (itself the mean over its logging window, e.g.
        return_mean over the episodes since the last runner log), for the stats logged since the previous summary.

        The run loops log "episode" once per summary, so its previous entry marks where the last summary was; stats
        not logged since then (learner stats between two learner logs) are left out instead of repeated.
        """
        episodes = list(self.stats["episode"])
        t_env, episode = episodes[-1] if episodes else (0, 0)
        previous_t = episodes[-2][0] if len(episodes) > 1 else None
        lines = [f"Recent Stats | t_env: {t_env:>10} | Episode: {int(episode):>8}"]
        fresh = [key for key in sorted(self.stats) if key != "episode" and self.stats[key]
                 and (previous_t is None or self.stats[key][-1][0] > previous_t)]
        row = ""
        for i, key in enumerate(fresh):
            row += f"{key + ':':<25}{self.stats[key][-1][1]:>8.4f}    "
            if i % 4 == 3:
                lines.append(row.rstrip())
                row = ""
        if row:
            lines.append(row.rstrip())
        self.info("\n".join(lines))

    def info(self, message):
        """Console message that does not break the progress bar."""
        if self.progress is not None:
            self.progress.clear()
        self.console_logger.info(message)
        if self.progress is not None:
            self.progress.refresh()

    def finish(self):
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None
        if self.wandb_run is not None:
            self._flush_wandb()
            self.wandb_run.finish()
            self.wandb_run = None


def get_logger():
    """The root logger with PyMARL's format: [LEVEL HH:MM:SS] name message."""
    logger = logging.getLogger()
    logger.handlers = []
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s] %(name)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger
