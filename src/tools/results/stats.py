"""Statistics for comparing MARL runs: bootstrap CIs over seeds, and the aggregate metrics of Agarwal et al. 2021
("Deep RL at the edge of the statistical precipice", the rliable library) as used by Gorsane et al. 2022:
interquartile mean, optimality gap, probability of improvement, with stratified bootstrap CIs.

Every bootstrap takes its own `seed`, so a number does not change when other groups are added or filtered out.
Confidence intervals are percentile intervals of the bootstrap distribution (rliable's default).
"""
import numpy as np
from scipy import stats as sps

ALPHA = 0.05  # 95 % intervals


def _percentile_ci(samples, axis=0):
    low, high = np.percentile(samples, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)], axis=axis)
    return low, high


def bootstrap_mean_ci(values, reps, seed):
    """95 % percentile-bootstrap CI of the mean of `values` (None for fewer than two values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(reps, x.size))].mean(axis=1)
    low, high = _percentile_ci(means)
    return float(low), float(high)


def bootstrap_curve_ci(curves, reps, seed):
    """Pointwise 95 % CI of the mean curve; `curves` is [seeds, points]. None for a single seed."""
    x = np.asarray(curves, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(reps, n))].mean(axis=1)
    return _percentile_ci(means)


def value_at_budget(steps, values, budget):
    """Value of the last evaluation at or before `budget` env steps (None if the first one came later)."""
    idx = int(np.searchsorted(steps, budget, side="right")) - 1
    return None if idx < 0 else float(values[idx])


def value_nearest(steps, values, budget):
    """Value of the evaluation closest to `budget` env steps (the earlier one of two equally close)."""
    return float(values[int(np.argmin(np.abs(np.asarray(steps) - budget)))])


def steps_to_threshold(steps, values, threshold):
    """Env steps of the first evaluation with value >= `threshold` (None if never reached)."""
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return None if hits.size == 0 else float(steps[hits[0]])


def trailing_mean(values, window):
    """Moving average over the last `window` evaluations (fewer at the start); window 1 returns the input."""
    x = np.asarray(values, dtype=np.float64)
    if window <= 1 or x.size == 0:
        return x
    cums = np.concatenate([[0.0], np.cumsum(x)])
    ends = np.arange(1, x.size + 1)
    starts = np.maximum(ends - window, 0)
    return (cums[ends] - cums[starts]) / (ends - starts)


def iqm(scores, axis=None):
    """Interquartile mean: mean of the middle 50 % (scipy `trim_mean`, 25 % cut at each end, as rliable)."""
    return sps.trim_mean(scores, proportiontocut=0.25, axis=axis)


def optimality_gap(scores, axis=None, gamma=1.0):
    """Mean shortfall below the target `gamma` (1.0 = perfect normalised score); lower is better."""
    return np.mean(np.maximum(gamma - np.asarray(scores, dtype=np.float64), 0.0), axis=axis)


def _stratified_resample(task_scores, reps, rng):
    """[reps, total runs]: each task's runs resampled with replacement within that task, side by side."""
    blocks = []
    for scores in task_scores:
        x = np.asarray(scores, dtype=np.float64)
        blocks.append(x[rng.integers(0, x.size, size=(reps, x.size))])
    return np.concatenate(blocks, axis=1)


def aggregate_with_ci(task_scores, statistic, reps, seed):
    """(point, (low, high)) of `statistic(scores, axis)` over the runs of all tasks, with a stratified bootstrap
    CI (runs resampled within each task). `task_scores` is a list of 1-D arrays, one per task."""
    flat = np.concatenate([np.asarray(s, dtype=np.float64) for s in task_scores])
    point = float(statistic(flat, axis=None))
    rng = np.random.default_rng(seed)
    samples = statistic(_stratified_resample(task_scores, reps, rng), axis=1)
    low, high = _percentile_ci(samples)
    return point, (float(low), float(high))


def _pairwise_improvement(x, y):
    """P(X > Y) + 0.5 P(X = Y) over all run pairs of one task; x [..., n], y [..., m] -> [...]."""
    a = x[..., :, None]
    b = y[..., None, :]
    return (a > b).mean(axis=(-2, -1)) + 0.5 * (a == b).mean(axis=(-2, -1))


def probability_of_improvement(x_tasks, y_tasks, reps, seed):
    """(P(X > Y), (low, high)): the Mann-Whitney probability that a run of X beats a run of Y on the same task,
    averaged over tasks; CI by resampling the runs of X and of Y independently within each task."""
    pairs = [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for x, y in zip(x_tasks, y_tasks)]
    point = float(np.mean([_pairwise_improvement(x, y) for x, y in pairs]))
    rng = np.random.default_rng(seed)
    per_task = []
    for x, y in pairs:
        xs = x[rng.integers(0, x.size, size=(reps, x.size))]
        ys = y[rng.integers(0, y.size, size=(reps, y.size))]
        per_task.append(_pairwise_improvement(xs, ys))
    low, high = _percentile_ci(np.mean(per_task, axis=0))
    return point, (float(low), float(high))
