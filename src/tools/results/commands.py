"""The sub-commands: each takes `records.Run`s and returns `output.Section`s (plot also writes PNG and PDF)."""
import json
import math
import os
from collections import defaultdict

import numpy as np

from tools.results import stats
from tools.results.groups import Grouping, one_run_per_seed
from tools.results.output import Section, fmt_ci, fmt_duration, fmt_num, fmt_steps
from tools.results.records import RETURN_METRIC, WIN_METRIC, config_get


class CommandError(Exception):
    """The command cannot produce its output from the selected runs (message says why)."""


# ---------------------------------------------------------------------------------------------------------------
# selection


def _matches(actual, wanted):
    try:
        parsed = json.loads(wanted)
    except json.JSONDecodeError:
        parsed = wanted
    if isinstance(actual, bool) or isinstance(parsed, bool):
        return str(actual).lower() == str(wanted).lower()
    return actual == parsed or str(actual) == wanted


def filter_runs(runs, algs=None, maps=None, statuses=None, where=(), since=None):
    """Runs whose algorithm / map / status is in the given lists (None = any), whose config matches every
    (dotted key, value) in `where`, and that started at or after `since`. Status "STALE" selects RUNNING runs
    with a stale heartbeat."""
    selected = []
    wanted_status = {s.upper() for s in statuses} if statuses else None
    for run in runs:
        if algs and run.alg not in algs:
            continue
        if maps and run.map not in maps:
            continue
        if wanted_status and run.status.upper() not in wanted_status and not (run.stale and "STALE" in wanted_status):
            continue
        if any(not _matches(config_get(run.config, key), value) for key, value in where):
            continue
        if since is not None and (run.start_time is None or run.start_time < since):
            continue
        selected.append(run)
    return selected


def _seed_label(run, why):
    return f"seed {run.seed} (run {run.id}, {why})"


def _seed_order(run):
    numeric = isinstance(run.seed, (int, float)) and not isinstance(run.seed, bool)
    return (not numeric, run.seed if numeric else 0, str(run.seed), run.id)


def _eligible(runs, include_incomplete):
    """Runs usable for comparisons, and notes naming the ones left out."""
    kept, notes, evaluations = [], [], []
    for run in runs:
        if run.alg is None or run.map is None:
            reason = "; ".join(run.problems) or "config has no algorithm name or map"
            notes.append(f"run {run.id} skipped: {reason}")
        elif run.diverged is not None:  # its numbers come from a broken network: never a result
            notes.append(f"run {run.id} ({run.alg}, {run.map}) excluded: {run.diverged.get('message', 'diverged')} "
                         f"(a diverged run is never counted, not even with --include-incomplete)")
        elif run.evaluation:
            evaluations.append(run.id)
        elif run.status != "COMPLETED" and not include_incomplete:
            notes.append(f"run {run.id} ({run.alg}, {run.map}) excluded: status {run.status_label} "
                         f"(use --include-incomplete to keep it)")
        else:
            kept.append(run)
    if evaluations:
        notes.append(f"{len(evaluations)} evaluation run{'' if len(evaluations) == 1 else 's'} left out "
                     f"(evaluate=True: test episodes of a checkpoint, not a training seed): {', '.join(evaluations)}")
    return kept, notes


def _labels(runs, grouping):
    """The `groups.Grouping` of `runs` for (--group-by keys, --label key); unknown keys are an error."""
    labels = Grouping(runs, *grouping)
    if labels.unknown:
        raise CommandError(f"no selected run has config key(s) {', '.join(labels.unknown)} (--group-by / --label)")
    return labels


def _group(runs, metric, include_incomplete, grouping):
    """{map: (metric, {group label: (runs, one per seed sorted by seed; repeats left out)})} and notes. Without an
    explicit metric each map uses `test_battle_won_mean` if any of its runs logged it, else `test_return_mean`.
    `grouping` is (group_by keys or None, label key or None), see `groups.Grouping`."""
    kept, notes = _eligible(runs, include_incomplete)
    labels = _labels(kept, grouping)
    notes += labels.notes()
    by_map = defaultdict(list)
    for run in kept:
        by_map[run.map].append(run)
    groups = {}
    for map_name in sorted(by_map):
        map_runs = by_map[map_name]
        chosen = metric
        if chosen is None:
            chosen = next((m for m in (WIN_METRIC, RETURN_METRIC) if any(m in r.metrics for r in map_runs)), None)
        if chosen is None:
            notes.append(f"map {map_name} skipped: no run logged {WIN_METRIC} or {RETURN_METRIC}")
            continue
        by_label = defaultdict(list)
        for run in map_runs:
            if chosen in run.metrics and len(run.metrics[chosen][0]):
                by_label[labels.label(run)].append(run)
            else:
                notes.append(f"run {run.id} ({run.alg}, {map_name}) has no {chosen} values")
        if by_label:
            groups[map_name] = (chosen, {})
        for label in sorted(by_label):
            seeds, repeats, repeat_notes = one_run_per_seed(f"{map_name} {label}", by_label[label], chosen)
            notes += repeat_notes
            groups[map_name][1][label] = (sorted(seeds, key=_seed_order), repeats)
    return groups, notes


def _score(run, metric, budget, nearest=False):
    """(value, None) with a run's final evaluation (budget None) or its evaluation at `budget` (the last one at or
    before it, or with `nearest` the one closest to it); (None, reason) when it has none."""
    if budget is None:
        return float(run.metrics[metric][1][-1]), None
    steps, values = run.metrics[metric]
    if (run.t_reached or 0) < budget:
        return None, f"trained to {run.t_reached} steps"
    if nearest:
        return stats.value_nearest(steps, values, budget), None
    value = stats.value_at_budget(steps, values, budget)
    if value is None:
        return None, f"first evaluation at {int(steps[0])} steps"
    return value, None


def budget_rule(nearest):
    return "evaluation nearest to" if nearest else "last evaluation at or before"


# ---------------------------------------------------------------------------------------------------------------
# list


def _kind(run):
    if run.config is None:
        return "?"
    return "eval" if run.evaluation else "train"


def list_runs(runs, metric=None, grouping=(None, None)):
    labels = _labels([r for r in runs if not r.evaluation], grouping)
    rows = []
    for run in sorted(runs, key=lambda r: (r.start_time is None, r.start_time or 0, r.id)):
        name = metric or run.default_metric()
        last = best = None
        if run.diverged is None and name in run.metrics and len(run.metrics[name][1]):
            values = run.metrics[name][1]
            last, best = float(values[-1]), float(np.max(values))
        notes = list(run.problems)
        if run.diverged is not None:
            notes.insert(0, f"{run.diverged.get('message', 'diverged')}: its values are not shown")
        if run.evaluation:
            notes.insert(0, f"evaluation of checkpoint {config_get(run.config, 'checkpoint_path') or '(none)'}")
        rows.append({"id": run.id, "alg": run.alg, "label": labels.label(run) if run.alg is not None else None,
                     "map": run.map, "seed": run.seed, "kind": _kind(run),
                     "status": run.status_label, "start": run.start_time, "duration_s": run.duration,
                     "t_env": run.t_reached, "metric": name, "last": last, "best": best, "notes": notes})
    columns = [("id", lambda r: r["id"]), ("label", lambda r: str(r["label"] or "?")),
               ("map", lambda r: str(r["map"] or "?")),
               ("seed", lambda r: "?" if r["seed"] is None else str(r["seed"])),
               ("kind", lambda r: r["kind"]), ("status", lambda r: r["status"]),
               ("start", lambda r: r["start"].strftime("%Y-%m-%d %H:%M") if r["start"] else "-"),
               ("duration", lambda r: fmt_duration(r["duration_s"])), ("t_env", lambda r: fmt_steps(r["t_env"])),
               ("metric", lambda r: r["metric"] or "-"), ("last", lambda r: fmt_num(r["last"])),
               ("best", lambda r: fmt_num(r["best"])), ("notes", lambda r: "; ".join(r["notes"]))]
    return [Section("runs", f"{len(rows)} runs", columns, rows, labels.notes())]


# ---------------------------------------------------------------------------------------------------------------
# compare


def _budget_cells(row, label, values, reps, seed):
    mean = float(np.mean(values)) if values else None
    ci = stats.bootstrap_mean_ci(values, reps, seed)
    row[f"n@{label}"] = len(values)
    row[f"mean@{label}"] = mean
    row[f"ci_low@{label}"] = ci[0] if ci else None
    row[f"ci_high@{label}"] = ci[1] if ci else None


def _compare_row(map_name, chosen, label, seeds, repeats, budgets, threshold, options):
    """One compare row and its notes; `options` is (nearest, reps, seed, timing)."""
    nearest, reps, seed, timing = options
    row = {"map": map_name, "metric": chosen, "alg": label, "seeds": len(seeds), "repeats": repeats,
           "seed_ids": [r.seed for r in seeds], "budget_rule": budget_rule(nearest)}
    notes = []
    for budget, point in _points(budgets):
        values, out = [], []
        for run in seeds:
            value, why = _score(run, chosen, budget, nearest)
            if value is None:
                out.append(_seed_label(run, why))
            else:
                values.append(value)
        if out:
            notes.append(f"{label} @{point}: {len(out)} of {len(seeds)} seeds counted out: " + "; ".join(out))
        _budget_cells(row, point, values, reps, seed)
    if threshold is not None:
        hits = [stats.steps_to_threshold(*r.metrics[chosen], threshold) for r in seeds]
        hits = [h for h in hits if h is not None]
        row["threshold"] = threshold
        row["reached"] = len(hits)
        row["steps_to_threshold"] = float(np.mean(hits)) if hits else None
    if timing:
        timed = [r for r in seeds if r.duration and r.t_reached]
        row["wall_clock_s"] = float(np.mean([r.duration for r in timed])) if timed else None
        row["env_steps_per_s"] = float(np.mean([r.t_reached / r.duration for r in timed])) if timed else None
    return row, notes


def compare(runs, metric=None, budgets=(), threshold=None, include_incomplete=False, reps=2000, seed=0,
            grouping=(None, None), nearest=False, timing=False):
    groups, notes = _group(runs, metric, include_incomplete, grouping)
    if not groups:
        raise CommandError("no runs to compare" + ("".join(f"\n  {n}" for n in notes)))
    sections = []
    for map_name, (chosen, by_label) in groups.items():
        rows, map_notes = [], []
        for label, (seeds, repeats) in by_label.items():
            row, row_notes = _compare_row(map_name, chosen, label, seeds, repeats, budgets, threshold,
                                          (nearest, reps, seed, timing))
            rows.append(row)
            map_notes += row_notes
        columns = _compare_columns(budgets, threshold, nearest, timing)
        sections.append(Section("compare", f"{map_name}: {chosen}", columns, rows, map_notes))
    if sections:
        sections[-1].notes.extend(notes)
    return sections


def _points(budgets):
    """(budget, label) pairs; without budgets, one point: each seed's final evaluation."""
    return [(b, str(b)) for b in budgets] or [(None, "final")]


def _seeds_cell(row):
    repeats = row["repeats"]
    return str(row["seeds"]) + (f" (+{repeats} repeat{'' if repeats == 1 else 's'})" if repeats else "")


def _compare_columns(budgets, threshold, nearest=False, timing=False):
    def cell(label):
        def fmt(row):
            n = row[f"n@{label}"]
            if n == 0:
                return f"- (n=0/{row['seeds']})"
            ci = None if row[f"ci_low@{label}"] is None else (row[f"ci_low@{label}"], row[f"ci_high@{label}"])
            text = fmt_ci(row[f"mean@{label}"], ci)
            return text if n == row["seeds"] else f"{text} (n={n}/{row['seeds']})"
        return fmt

    rule = "nearest eval" if nearest else "last eval <="
    columns = [("alg", lambda r: r["alg"]), ("seeds", _seeds_cell)]
    columns += [("final mean [95% CI]" if budget is None else f"@{label} ({rule}) mean [95% CI]", cell(label))
                for budget, label in _points(budgets)]
    if threshold is not None:
        columns.append((f"steps to >= {threshold:g} (reached)",
                        lambda r: f"{fmt_steps(r['steps_to_threshold'])} ({r['reached']}/{r['seeds']})"))
    if timing:  # each seed's whole run: start to stop (or last heartbeat), env steps reached / that time
        columns += [("wall-clock (mean)", lambda r: fmt_duration(r["wall_clock_s"])),
                    ("env steps/s (mean)", lambda r: fmt_num(r["env_steps_per_s"], 1))]
    return columns


# ---------------------------------------------------------------------------------------------------------------
# profile

SHARE_PREFIX = "time_share_"  # MAZero's run loop logs each part's share of the wall-clock so far (cumulative)
PER_UNITS = {"env-step": "ms/env step", "update": "ms/update"}  # --per: the unit of each part's cost


def _profile_points(run):
    """[(t_env, elapsed s, updates, {part: seconds})] at each time-profile log, from t_env 0 (elapsed 0); None
    with the reason when the run has no profile. Elapsed = t_env / env_steps_per_second: the profile's clock
    starts with the run's loop at t_env 0."""
    parts = sorted(name[len(SHARE_PREFIX):] for name in run.metrics if name.startswith(SHARE_PREFIX))
    needed = ["env_steps_per_second", "updates_per_second"] + [SHARE_PREFIX + p for p in parts]
    missing = [name for name in needed if name not in run.metrics]
    if not parts or missing:
        return None, f"no time profile ({', '.join(missing) or SHARE_PREFIX + '*'} not logged)"
    if config_get(run.config, "checkpoint_path"):
        return None, "resumed from a checkpoint: its profile starts at an unlogged t_env"
    steps = run.metrics["env_steps_per_second"][0]
    series = {}
    for name in needed:
        logged_at, values = run.metrics[name]
        if not np.array_equal(logged_at, steps):
            return None, f"{name} is logged at other env steps than env_steps_per_second"
        series[name] = values
    points = [(0.0, 0.0, 0.0, dict.fromkeys(parts, 0.0))]
    for i, t_env in enumerate(steps):
        if t_env <= 0:  # the loop's start, already the first point
            continue
        elapsed = t_env / series["env_steps_per_second"][i]
        points.append((float(t_env), elapsed, elapsed * series["updates_per_second"][i],
                       {p: elapsed * series[SHARE_PREFIX + p][i] for p in parts}))
    return (parts, points), None


def _stretch_row(run, label, start, end, per, whole_run=False):
    (t0, w0, u0, s0), (t1, w1, u1, s1) = start, end
    wall, steps, updates = w1 - w0, t1 - t0, u1 - u0
    units = steps if per == "env-step" else updates
    row = {"run": run.id, "alg": label, "seed": run.seed, "from_step": t0, "to_step": t1, "wall_clock_s": wall,
           "env_steps_per_s": steps / wall, "updates_per_s": updates / wall, "per": per, "whole_run": whole_run}
    for part in s0:
        seconds = s1[part] - s0[part]
        row[f"ms_per_unit@{part}"] = 1000 * seconds / units if units > 0 else None
        row[f"share@{part}"] = seconds / wall
    row["share@other"] = 1 - sum(row[f"share@{p}"] for p in s0)
    return row


def profile(runs, budgets=(), per="env-step", include_incomplete=False, grouping=(None, None), nearest=False):
    """Per map, one row per run and stretch of env steps: wall-clock, env steps/s, updates/s and each part's cost
    per env step (or per update) and share, from the run's time profile. A stretch ends at the last profile log
    at or before each budget (with `nearest`, the log nearest to it); the first starts at t_env 0, and a last row
    covers the whole run."""
    kept, notes = _eligible(runs, include_incomplete)
    labels = _labels(kept, grouping)
    notes += labels.notes()
    by_map = defaultdict(list)
    for run in sorted(kept, key=lambda r: (labels.label(r), _seed_order(r))):
        profiled, why = _profile_points(run)
        if profiled is None:
            notes.append(f"run {run.id} ({run.alg}, {run.map}) skipped: {why}")
            continue
        parts, points = profiled
        chosen = [points[0]]
        steps, indices = [p[0] for p in points], range(len(points))
        rule = stats.value_nearest if nearest else stats.value_at_budget  # compare's budget rule
        for budget in budgets:
            at = points[int(rule(steps, indices, budget))]
            if at[0] > chosen[-1][0]:
                chosen.append(at)
        stretches = list(zip(chosen, chosen[1:]))
        if budgets and points[-1][0] > chosen[-1][0]:
            notes.append(f"run {run.id}: stretches stop at {int(chosen[-1][0])} env steps, the profile log "
                         f"{'nearest to' if nearest else 'at or before'} {max(budgets)}; the run goes on to "
                         f"{int(points[-1][0])}")
        rows = [_stretch_row(run, labels.label(run), a, b, per) for a, b in stretches]
        rows.append(_stretch_row(run, labels.label(run), points[0], points[-1], per, whole_run=True))
        by_map[run.map].append((parts, rows))
    if not by_map:
        raise CommandError("no run with a time profile" + "".join(f"\n  {n}" for n in notes))
    sections = []
    for map_name in sorted(by_map):
        parts = sorted({p for run_parts, _ in by_map[map_name] for p in run_parts})
        rows = [row for _, run_rows in by_map[map_name] for row in run_rows]
        sections.append(Section("profile", f"{map_name}: time profile per stretch of env steps",
                                _profile_columns(parts, per), rows))
    sections[-1].notes.extend(notes)
    return sections


def _profile_columns(parts, per):
    def part_cell(part):
        def fmt(row):
            if f"share@{part}" not in row:
                return "-"
            return f"{fmt_num(row[f'ms_per_unit@{part}'], 1)} ({100 * row[f'share@{part}']:.1f}%)"
        return fmt

    def stretch(row):
        span = f"{fmt_steps(row['from_step'])}-{fmt_steps(row['to_step'])}"
        return f"{span} (whole run)" if row["whole_run"] else span

    unit = PER_UNITS[per]
    columns = [("alg", lambda r: r["alg"]), ("seed", lambda r: str(r["seed"])), ("run", lambda r: r["run"]),
               ("env steps", stretch), ("wall-clock", lambda r: fmt_duration(r["wall_clock_s"])),
               ("env steps/s", lambda r: fmt_num(r["env_steps_per_s"], 2)),
               ("updates/s", lambda r: fmt_num(r["updates_per_s"], 2))]
    columns += [(f"{part} {unit} (share)", part_cell(part)) for part in parts]
    columns.append(("other (share)", lambda r: f"{100 * r['share@other']:.1f}%"))
    return columns


# ---------------------------------------------------------------------------------------------------------------
# plot


def _mean_curve(alg_runs, metric, smooth, points, reps, seed):
    """(grid, mean, ci or None, notes): seeds smoothed, interpolated on a common env-step grid spanning the
    range every seed covers (from the latest first evaluation to the earliest last one)."""
    series = []
    for run in alg_runs:
        steps, values = run.metrics[metric]
        series.append((steps, stats.trailing_mean(values, smooth)))
    lo = max(s[0] for s, _ in series)
    hi = min(s[-1] for s, _ in series)
    notes = []
    if hi < lo:
        return None, None, None, ["seeds cover disjoint env-step ranges; nothing to average"]
    longest = max(s[-1] for s, _ in series)
    if longest - hi > 0.05 * (longest - lo):  # more than evaluation-step jitter between seeds
        notes.append(f"curve stops at {int(hi)} steps, where the shortest seed ends (longest: {int(longest)})")
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    curves = np.stack([np.interp(grid, s, v) for s, v in series])
    return grid, curves.mean(axis=0), stats.bootstrap_curve_ci(curves, reps, seed), notes


def plot(runs, out, metric=None, smooth=1, points=200, include_incomplete=False, reps=2000, seed=0,
         grouping=(None, None)):
    groups, notes = _group(runs, metric, include_incomplete, grouping)
    if not groups:
        raise CommandError("no runs to plot" + ("".join(f"\n  {n}" for n in notes)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_algs = sorted({alg for _, by_alg in groups.values() for alg in by_alg})
    palette = plt.get_cmap("tab10")
    colours = {alg: palette(i % 10) for i, alg in enumerate(all_algs)}
    ncols = min(len(groups), 3)
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows), squeeze=False)
    rows = []
    for ax, (map_name, (chosen, by_alg)) in zip(axes.flat, groups.items()):
        for alg, (alg_runs, _) in by_alg.items():
            grid, mean, ci, curve_notes = _mean_curve(alg_runs, chosen, smooth, points, reps, seed)
            notes += [f"{map_name} {alg}: {n}" for n in curve_notes]
            if grid is None:
                continue
            colour = colours[alg]
            label = f"{alg} (n={len(alg_runs)})"
            if grid.size == 1:
                ax.errorbar(grid, mean, yerr=None if ci is None else [mean - ci[0], ci[1] - mean], fmt="o",
                            color=colour, label=label)
            else:
                ax.plot(grid, mean, color=colour, label=label)
                if ci is not None:
                    ax.fill_between(grid, ci[0], ci[1], color=colour, alpha=0.25, linewidth=0)
            rows.append({"map": map_name, "metric": chosen, "alg": alg, "seeds": len(alg_runs),
                         "from_step": float(grid[0]), "to_step": float(grid[-1]), "final_mean": float(mean[-1]),
                         "final_ci_low": None if ci is None else float(ci[0][-1]),
                         "final_ci_high": None if ci is None else float(ci[1][-1])})
        ax.set_title(map_name)
        ax.set_xlabel("env steps")
        ax.set_ylabel(chosen + (f" (smoothed over {smooth} evals)" if smooth > 1 else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle("mean over seeds, shaded: 95% bootstrap CI", fontsize="medium")
    fig.tight_layout()
    stem = out[:-4] if out.lower().endswith((".png", ".pdf")) else out
    if os.path.dirname(stem):
        os.makedirs(os.path.dirname(stem), exist_ok=True)
    files = [stem + ".png", stem + ".pdf"]
    fig.savefig(files[0], dpi=150)
    fig.savefig(files[1])
    plt.close(fig)
    columns = [("map", lambda r: r["map"]), ("metric", lambda r: r["metric"]), ("alg", lambda r: r["alg"]),
               ("seeds", lambda r: str(r["seeds"])),
               ("env steps", lambda r: f"{fmt_steps(r['from_step'])}-{fmt_steps(r['to_step'])}"),
               ("final mean [95% CI]", lambda r: fmt_ci(r["final_mean"], None if r["final_ci_low"] is None
                                                        else (r["final_ci_low"], r["final_ci_high"])))]
    notes = [f"wrote {f}" for f in files] + notes
    return [Section("curves", f"learning curves: {files[0]}, {files[1]}", columns, rows, notes)]


# ---------------------------------------------------------------------------------------------------------------
# aggregate


def _normalise(map_name, metric, scores_by_alg, bounds):
    """Scores in [0, 1]-ish units and a note on how: win rates as they are; other metrics with `bounds[map]` or
    min-max over all runs of all algorithms on the map (Gorsane et al. 2022)."""
    if "battle_won" in metric:
        return scores_by_alg, None
    if map_name in bounds:
        lo, hi = bounds[map_name]
        how = f"{map_name}: {metric} normalised with --bounds [{lo:g}, {hi:g}]"
    else:
        flat = np.concatenate(list(scores_by_alg.values()))
        lo, hi = float(flat.min()), float(flat.max())
        if hi == lo:
            return None, f"{map_name} skipped: every run scores {lo:g}, min-max normalisation undefined " \
                         f"(give --bounds {map_name}=LO:HI)"
        how = f"{map_name}: {metric} min-max normalised over all runs: [{lo:g}, {hi:g}] -> [0, 1]"
    return {alg: (s - lo) / (hi - lo) for alg, s in scores_by_alg.items()}, how


def _task_scores(groups, budget, nearest, bounds, notes):
    """{map: {group label: normalised scores, one per seed}}; appends to `notes` what was counted out and how
    each map was normalised."""
    tasks = {}
    for map_name, (chosen, by_label) in groups.items():
        scores = {}
        for label, (seeds, _) in by_label.items():
            values = []
            for run in seeds:
                value, why = _score(run, chosen, budget, nearest)
                if value is None:
                    notes.append(f"{map_name} {label}: {_seed_label(run, why)} counted out at {budget}")
                else:
                    values.append(value)
            if values:
                scores[label] = np.array(values)
        if not scores:
            continue
        normalised, how = _normalise(map_name, chosen, scores, bounds)
        if how:
            notes.append(how)
        if normalised is not None:
            tasks[map_name] = normalised
    return tasks


def aggregate(runs, metric=None, budget=None, pairs=None, bounds=None, include_incomplete=False, reps=2000, seed=0,
              grouping=(None, None), nearest=False):
    groups, notes = _group(runs, metric, include_incomplete, grouping)
    bounds = bounds or {}
    unknown = sorted(set(bounds) - set(groups))
    if unknown:
        raise CommandError(f"--bounds names maps without runs: {', '.join(unknown)}")
    tasks = _task_scores(groups, budget, nearest, bounds, notes)
    algs = sorted({alg for by_alg in tasks.values() for alg in by_alg})
    common = [m for m in tasks if all(alg in tasks[m] for alg in algs)]
    for map_name in tasks:
        if map_name not in common:
            missing = [alg for alg in algs if alg not in tasks[map_name]]
            notes.append(f"map {map_name} left out of IQM / optimality gap: no scores for {', '.join(missing)}")
    if not common:
        raise CommandError("no map has scores for every algorithm" + "".join(f"\n  {n}" for n in notes))
    where = "final evaluation" if budget is None else f"{budget_rule(nearest)} {budget} steps"
    rows = []
    for alg in algs:
        task_scores = [tasks[m][alg] for m in common]
        iqm, iqm_ci = stats.aggregate_with_ci(task_scores, stats.iqm, reps, seed)
        gap, gap_ci = stats.aggregate_with_ci(task_scores, stats.optimality_gap, reps, seed)
        rows.append({"alg": alg, "maps": len(common), "runs": int(sum(s.size for s in task_scores)),
                     "iqm": iqm, "iqm_ci_low": iqm_ci[0], "iqm_ci_high": iqm_ci[1],
                     "optimality_gap": gap, "og_ci_low": gap_ci[0], "og_ci_high": gap_ci[1]})
    columns = [("alg", lambda r: r["alg"]), ("maps", lambda r: str(r["maps"])), ("runs", lambda r: str(r["runs"])),
               ("IQM [95% CI]", lambda r: fmt_ci(r["iqm"], (r["iqm_ci_low"], r["iqm_ci_high"]))),
               ("optimality gap [95% CI]",
                lambda r: fmt_ci(r["optimality_gap"], (r["og_ci_low"], r["og_ci_high"])))]
    maps = f"{len(common)} map{'' if len(common) == 1 else 's'} ({', '.join(common)})"
    sections = [Section("aggregate", f"aggregate over {maps}, score = {where}, stratified bootstrap {reps} reps",
                        columns, rows)]

    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(algs) for b in algs[i + 1:]]
    unknown = sorted({a for pair in pairs for a in pair} - set(algs))
    if unknown:
        raise CommandError(f"--pairs names algorithms without scores: {', '.join(unknown)} "
                           f"(have: {', '.join(algs)})")
    poi_rows = []
    for x, y in pairs:
        shared = [m for m in tasks if x in tasks[m] and y in tasks[m]]
        if not shared:
            notes.append(f"P({x} > {y}) skipped: no map with scores for both")
            continue
        p, ci = stats.probability_of_improvement([tasks[m][x] for m in shared], [tasks[m][y] for m in shared],
                                                 reps, seed)
        poi_rows.append({"x": x, "y": y, "maps": len(shared), "p_improvement": p, "ci_low": ci[0], "ci_high": ci[1]})
    poi_columns = [("X", lambda r: r["x"]), ("Y", lambda r: r["y"]), ("maps", lambda r: str(r["maps"])),
                   ("P(X > Y) [95% CI]", lambda r: fmt_ci(r["p_improvement"], (r["ci_low"], r["ci_high"])))]
    if poi_rows or pairs:
        sections.append(Section("improvement", "probability of improvement", poi_columns, poi_rows))
    sections[-1].notes.extend(notes)
    return sections
