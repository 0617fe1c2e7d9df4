"""Wall-clock helpers for the console log (elapsed time and ETA over t_env)."""
import time


def time_str(seconds):
    """Seconds -> 'Xd Yh Zm Ws' without leading zero units."""
    seconds = int(max(seconds, 0))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m")]
    text = " ".join(f"{value}{unit}" for value, unit in parts if value)
    return f"{text} {seconds}s".strip()


def time_left(start_time, t_start, t_current, t_max):
    """ETA string, extrapolating the env-step rate since (start_time, t_start) to t_max."""
    if t_current <= t_start:
        return "-"
    elapsed = time.time() - start_time
    rate = (t_current - t_start) / max(elapsed, 1e-9)
    return time_str((t_max - t_current) / rate)
