"""Reinforcement-learning helpers shared by learners."""
import torch


class RunningMeanStd:
    """Running mean and variance over batches (parallel-variance merge), for reward standardisation."""

    def __init__(self, shape=(), epsilon=1e-4, device="cpu"):
        self.mean = torch.zeros(shape, dtype=torch.float32, device=device)
        self.var = torch.ones(shape, dtype=torch.float32, device=device)
        # pseudo-count of the initial (0, 1) estimate, so the first batch dominates but never divides by zero
        self.count = epsilon

    def update(self, x):
        """x [..., *shape]: every leading index is one sample."""
        x = x.reshape(-1, *self.mean.shape)
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        batch_count = x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.pow(2) * self.count * batch_count / total
        self.var = m2 / total
        self.count = total
