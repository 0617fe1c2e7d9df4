"""Exploration schedules (EPyMARL's DecayThenFlatSchedule)."""
import math


class DecayThenFlatSchedule:
    """Decays from `start` to `finish` over `time_length` env steps, then stays at `finish`.

    decay "linear": straight line. decay "exp": exp(-T / scale) with the scale chosen so the value reaches `finish`
    at T = time_length, clipped into [finish, start].
    """

    def __init__(self, start, finish, time_length, decay="exp"):
        if decay not in ("linear", "exp"):
            raise ValueError(f"decay must be 'linear' or 'exp', got {decay!r}")
        if time_length <= 0:
            raise ValueError(f"time_length must be positive, got {time_length!r}")
        self.start = start
        self.finish = finish
        self.time_length = time_length
        self.decay = decay
        self.delta = (start - finish) / time_length
        # exp(-time_length / scale) == finish; for a finish of 0 (never reached) or >= 1 (no decay) use scale 1
        self.exp_scaling = -time_length / math.log(finish) if 0 < finish < 1 else 1.0

    def eval(self, T):
        if self.decay == "linear":
            return max(self.finish, self.start - self.delta * T)
        return min(self.start, max(self.finish, math.exp(-T / self.exp_scaling)))
