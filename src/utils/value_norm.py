"""Value normalisation (MAPPO's `use_valuenorm`): the critic predicts values in units of the running standard
deviation of the returns it is trained on, so its targets stay near N(0, 1) whatever the reward scale.

The statistics are the mean and variance of every return seen so far (`RunningMeanStd`, a parallel-variance
merge); MAPPO's code (marlbenchmark/on-policy, utils/valuenorm.py) keeps debiased moving averages with
beta 0.99999 instead and floors the variance at 1e-2.
"""
import torch

from utils.rl_utils import RunningMeanStd

# keeps the scale away from zero when every return seen so far is equal (e.g. a deterministic matrix game)
MIN_VAR = 1e-8


class ValueNorm:
    def __init__(self, device="cpu"):
        self.stats = RunningMeanStd(shape=(), device=device)

    def update(self, returns, mask):
        """Adds the returns where mask is nonzero (padded steps and dead agents are left out)."""
        selected = returns[mask.expand_as(returns) > 0]
        if selected.numel() > 0:
            self.stats.update(selected)

    def _scale(self):
        return torch.sqrt(self.stats.var.clamp_min(MIN_VAR))

    def normalise(self, values):
        return (values - self.stats.mean) / self._scale()

    def denormalise(self, values):
        return values * self._scale() + self.stats.mean

    def to(self, device):
        self.stats.mean = self.stats.mean.to(device)
        self.stats.var = self.stats.var.to(device)

    def state_dict(self):
        return {"mean": self.stats.mean, "var": self.stats.var, "count": self.stats.count}

    def load_state_dict(self, state):
        self.stats.mean = state["mean"].to(self.stats.mean.device)
        self.stats.var = state["var"].to(self.stats.var.device)
        self.stats.count = float(state["count"])
