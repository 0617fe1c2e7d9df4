"""Which runs are seeds of one configuration: group labels from config differences, one run per seed.

Runs share a group when they share the algorithm `name` and every config key that matters. By default the keys that
matter are all keys whose values differ between the selected runs of that name on one map, except the seed and the
keys that only say where or how often a run is recorded (`RECORD_KEYS`); those keys and their values become the
label on every map: `mazero_cpu[num_simulations=50, sampled_actions=10]`. `--group-by KEY,...`
names the keys instead, `--label KEY` names each group by one config key's value alone.
"""
import json
from collections import defaultdict

from tools.results.records import config_get

# keys that do not change what is trained: seeds, paths, logging and checkpoint cadence, devices, threads
RECORD_KEYS = frozenset({
    "seed", "env_args.seed", "local_results_path", "save_model", "save_model_interval", "checkpoint_path",
    "load_step", "evaluate", "use_tensorboard", "save_git_info", "log_interval", "runner_log_interval",
    "learner_log_interval", "torch_threads", "use_cuda", "buffer_cpu_only",
})
MAP_KEYS = frozenset({"env_args.map_name", "env_args.key"})
UNSET = "(unset)"


def flatten(config, prefix=""):
    """{dotted key: leaf value} of a nested config dict (lists are leaves)."""
    flat = {}
    for key, value in (config or {}).items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _canonical(value):
    """A hashable form in which 0 and 0.0 (YAML float, `with k=0` int) are the same value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return json.dumps(float(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    return json.dumps(value, sort_keys=True, default=str)


def _display(value):
    """How a value reads in a label; numbers as in `_canonical` (0 and 0.0 both read 0)."""
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _value(run, key):
    return config_get(run.config, key, UNSET)


def differing_keys(runs):
    """Sorted config keys (seed, record and map keys aside) whose values are not the same in all `runs`."""
    flats = [flatten(run.config) for run in runs]
    keys = set().union(*flats) - RECORD_KEYS - MAP_KEYS if flats else set()
    return sorted(k for k in keys if len({_canonical(f.get(k, UNSET)) for f in flats}) > 1)


class Grouping:
    """Group labels of runs, decided once over the runs being compared."""

    def __init__(self, runs, group_by=None, label_key=None):
        self.group_by = list(group_by) if group_by else None
        self.label_key = label_key
        by_name = defaultdict(lambda: defaultdict(list))  # name -> map -> runs
        for run in runs:
            if run.config is not None:
                by_name[run.alg][run.map].append(run)
        explicit = (self.group_by or []) + ([label_key] if label_key else [])
        self.unknown = [k for k in explicit if all(_value(run, k) is UNSET for run in runs)]
        self.keys = {}  # name -> keys in the label
        self.pooled = {}  # name -> differing keys that the explicit choice pools
        for name, by_map in by_name.items():
            # compared within each map: keys that differ only between maps (env configs) name no group
            differ = sorted(set().union(*(differing_keys(map_runs) for map_runs in by_map.values())))
            chosen = differ if self.group_by is None and label_key is None else (self.group_by or [])
            self.keys[name] = chosen
            self.pooled[name] = [k for k in differ if k not in chosen and k != label_key]

    def label(self, run):
        if self.label_key == "name":  # the algorithm label itself: pool every configuration of one name
            return str(run.alg)
        if self.label_key is not None:
            return f"{self.label_key}={_display(_value(run, self.label_key))}"
        keys = self.keys.get(run.alg) or []
        if not keys:
            return str(run.alg)
        return f"{run.alg}[{', '.join(f'{k}={_display(_value(run, k))}' for k in keys)}]"

    def notes(self):
        """Warnings about config differences that an explicit --group-by / --label pools."""
        return [f"{name}: runs differ in {', '.join(keys)} but are pooled by the "
                f"{'--label' if self.label_key else '--group-by'} choice"
                for name, keys in sorted(self.pooled.items(), key=lambda item: str(item[0])) if keys]


def _start_order(run):
    return (run.start_time is None, run.start_time or 0, run.id)


def _same_curve(a, b, metric):
    sa, va = a.metrics.get(metric, ((), ()))
    sb, vb = b.metrics.get(metric, ((), ()))
    return list(sa) == list(sb) and list(va) == list(vb)


def one_run_per_seed(label, runs, metric):
    """(runs, repeats, notes): the earliest run of each seed, the number of other runs of those seeds, and a note
    per repeated seed naming its runs and whether their `metric` curves differ from the one counted."""
    by_seed = defaultdict(list)
    for run in runs:
        by_seed[_canonical(run.seed)].append(run)
    kept, repeats, notes = [], 0, []
    for seed_runs in by_seed.values():
        seed_runs.sort(key=_start_order)
        first, others = seed_runs[0], seed_runs[1:]
        kept.append(first)
        if not others:
            continue
        repeats += len(others)
        differ = [r.id for r in others if not _same_curve(first, r, metric)]
        verdict = (f"the {metric} curves of {', '.join(differ)} DIFFER from it (the runs are not reproducible)"
                   if differ else f"identical {metric} curves")
        notes.append(f"{label} seed {first.seed}: {len(seed_runs)} runs ({', '.join(r.id for r in seed_runs)}) "
                     f"counted as one seed (run {first.id}, the earliest); {verdict}")
    return kept, repeats, notes
