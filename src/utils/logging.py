"""Logger: console summaries, Sacred (info.json and metrics.json), TensorBoard, and a progress bar over t_env.

Every value is converted to a Python float before it reaches Sacred, so info.json and metrics.json hold plain
numbers (numpy scalars would be stored as jsonpickle objects).
"""
import logging
import sys
from collections import defaultdict, deque

# Read at import, before Sacred's output capturing replaces the process's stdout.
STDOUT_IS_TTY = sys.stdout.isatty()

RECENT_WINDOW = 5  # values kept per stat (the console prints the latest; MAZero checkpoints save them)
PROGRESS_KEYS = (("test_battle_won_mean", "test win"), ("test_return_mean", "test return"))


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
        self.progress = None
        self._progress_postfix = {}

    def setup_tb(self, directory):
        from torch.utils.tensorboard import SummaryWriter

        self.tb_writer = SummaryWriter(log_dir=directory)

    def setup_sacred(self, sacred_run):
        self.sacred_run = sacred_run

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


def get_logger():
    """The root logger with PyMARL's format: [LEVEL HH:MM:SS] name message."""
    logger = logging.getLogger()
    logger.handlers = []
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s] %(name)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger
