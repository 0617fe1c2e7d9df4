"""Reading Sacred run records from a FileStorageObserver tree, a MongoDB database or an SQL database.

All three sources produce `Run` objects. Metrics come from `metrics.json` (Sacred `log_scalar`, EPyMARL) and, for
every metric that file lacks, from `info.json` (`_run.info[key]` values with `_run.info[key + "_T"]` env steps, the
only record pymarl/pymarl2 write, and the only one Sacred's SqlObserver keeps). Damaged records never raise: what
could not be read is kept in `Run.problems`.
"""
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

WIN_METRIC = "test_battle_won_mean"
RETURN_METRIC = "test_return_mean"
RECORD_FILES = ("config.json", "run.json", "info.json", "metrics.json", "cout.txt")
UNKNOWN_STATUS = "UNKNOWN"


class RecordError(Exception):
    """A results source that cannot be read at all (missing directory, unreachable database)."""


@dataclass
class Run:
    id: str
    config: dict | None
    status: str
    start_time: datetime | None = None
    stop_time: datetime | None = None
    heartbeat: datetime | None = None
    metrics: dict = field(default_factory=dict)  # name -> (steps float64 array, values float64 array), by step
    problems: list = field(default_factory=list)
    stale: bool = False
    diverged: dict | None = None  # info `diverged` ({"t_env", "message"}) of a run stopped by utils/divergence.py
    unique_token: str | None = None  # info `unique_token`: the name of the run's checkpoint folder
    resumed_from: dict | None = None  # info `resumed_from` of a resumed run: {"unique_token", "t_env", ...}

    @property
    def alg(self):
        return config_get(self.config, "name")

    @property
    def map(self):
        for key in ("env_args.map_name", "env_args.key", "env"):
            value = config_get(self.config, key)
            if value not in (None, ""):
                return str(value)
        return None

    @property
    def seed(self):
        return config_get(self.config, "seed")

    @property
    def evaluation(self):
        """An `evaluate=True` run: test episodes of a loaded checkpoint, logged at that checkpoint's t_env."""
        return config_get(self.config, "evaluate") is True

    @property
    def status_label(self):
        if self.diverged is not None:
            return f"{self.status} (diverged at t_env {self.diverged.get('t_env')})"
        return f"{self.status} (stale heartbeat)" if self.stale else self.status

    @property
    def final_t_env(self):
        """Largest env step any metric was logged at (None without metrics)."""
        last = [steps[-1] for steps, _ in self.metrics.values() if len(steps)]
        return int(max(last)) if last else None

    @property
    def t_reached(self):
        """Env steps the run is known to have trained for: its last logged step, or `t_max` once COMPLETED (an
        evaluation run trains nothing: its steps are those of the checkpoint it evaluated)."""
        reached = self.final_t_env
        t_max = config_get(self.config, "t_max")
        if self.evaluation:
            return reached
        if self.status == "COMPLETED" and isinstance(t_max, (int, float)) and not isinstance(t_max, bool):
            reached = max(reached or 0, int(t_max))
        return reached

    @property
    def duration(self):
        end = self.stop_time or self.heartbeat
        if self.start_time is None or end is None:
            return None
        return (end - self.start_time).total_seconds()

    def default_metric(self):
        """`test_battle_won_mean` if the run logged it, else `test_return_mean` (None if neither)."""
        for name in (WIN_METRIC, RETURN_METRIC):
            if name in self.metrics:
                return name
        return None


def config_get(config, dotted, missing=None):
    """Value of a dotted key (`env_args.map_name`) in a nested config dict, or `missing`."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return missing
        node = node[part]
    return node


def parse_time(value):
    """Sacred times (naive UTC `datetime` from Mongo, ISO strings in run.json) as naive UTC datetimes."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _number(value):
    """A JSON number, or a jsonpickle-encoded numpy scalar ({"py/object": "numpy.float64", "value": x})."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict) and str(value.get("py/object", "")).startswith("numpy.") and "value" in value:
        return _number(value["value"])
    return None


def _series(steps, values, label, problems):
    """Pair steps and values into sorted float arrays, dropping entries that are not numbers."""
    if len(steps) != len(values):
        problems.append(f"{label}: {len(steps)} steps but {len(values)} values; kept the first "
                        f"{min(len(steps), len(values))}")
    pairs = []
    dropped = 0
    for step, value in zip(steps, values):
        s, v = _number(step), _number(value)
        if s is None or v is None or math.isnan(s):
            dropped += 1
        else:
            pairs.append((s, v))
    if dropped:
        problems.append(f"{label}: dropped {dropped} entries that are not numbers")
    pairs.sort(key=lambda p: p[0])
    return (np.array([p[0] for p in pairs], dtype=np.float64), np.array([p[1] for p in pairs], dtype=np.float64))


def metrics_from_info(info, problems, label="info.json"):
    """`{key: (steps, values)}` for every `key` with a `key_T` list beside it in a `_run.info` dict."""
    out = {}
    if not isinstance(info, dict):
        return out
    for key, values in info.items():
        steps = info.get(key + "_T")
        if key.endswith("_T") or not isinstance(values, list) or not isinstance(steps, list):
            continue
        out[key] = _series(steps, values, f"{label} {key}", problems)
    return out


def metrics_from_sacred(metrics, problems, label="metrics.json"):
    """`{name: (steps, values)}` from Sacred's metrics layout `{name: {"steps": [...], "values": [...]}}`."""
    out = {}
    for name, entry in metrics.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("steps"), list) \
                or not isinstance(entry.get("values"), list):
            problems.append(f"{label}: metric {name!r} has no steps/values lists")
            continue
        out[name] = _series(entry["steps"], entry["values"], f"{label} {name}", problems)
    return out


def _read_json(path):
    """(object, problem): the parsed file, or None and why it could not be read."""
    name = os.path.basename(path)
    if not os.path.exists(path):
        return None, f"{name} missing"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{name} unreadable ({err})"
    if not text.strip():
        return None, f"{name} empty"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as err:
        return None, f"{name} truncated or invalid JSON ({err.msg}: line {err.lineno} column {err.colno})"


# learner statistics (q_learner, ppo_learner, mazero_learner) that are non-finite only in a diverged run
LEARNER_STATS = ("loss", "grad_norm", "pg_loss", "critic_loss", "agent_grad_norm", "critic_grad_norm")


def divergence_of(info, metrics):
    """{"t_env", "message"} of a diverged run: the `diverged` entry of its info (written when the run stopped),
    else the first non-finite learner statistic (records of runs from before the divergence check); or None."""
    diverged = info.get("diverged") if isinstance(info, dict) else None
    if isinstance(diverged, dict):
        return diverged
    for name in LEARNER_STATS:
        steps, values = metrics.get(name, ((), ()))
        broken = np.flatnonzero(~np.isfinite(np.asarray(values, dtype=np.float64)))
        if len(broken):
            t_env = int(steps[broken[0]])
            return {"t_env": t_env, "message": f"diverged at t_env {t_env}: {name} {values[broken[0]]:g}"}
    return None


def _apply_identity(run, info):
    """unique_token and resumed_from from a run's info (written by utils.logging.Logger.record_identity)."""
    if isinstance(info, dict):
        token = info.get("unique_token")
        run.unique_token = token if isinstance(token, str) else None
        resumed_from = info.get("resumed_from")
        run.resumed_from = resumed_from if isinstance(resumed_from, dict) else None


def _cut(metrics, last_t):
    """The metric series up to and including env step `last_t`."""
    return {name: (steps[steps <= last_t], values[steps <= last_t]) for name, (steps, values) in metrics.items()}


def _joined(chain):
    """One Run from the attempts of a resumed run, first attempt first: each attempt's metrics up to the t_env
    the next attempt resumed at, then the next's (resume is exact, docs/mazero.md; the sweep's records export
    joins attempts the same way); config, status and end from the last attempt, except the seed: the first
    attempt's, the seed the run started from (a resume given no `seed=` draws a new one)."""
    metrics = {}
    for attempt, after in zip(chain, chain[1:] + [None]):
        part = attempt.metrics if after is None else _cut(attempt.metrics, after.resumed_from.get("t_env", 0))
        for name, (steps, values) in part.items():
            old_steps, old_values = metrics.get(name, (np.empty(0), np.empty(0)))
            metrics[name] = (np.concatenate([old_steps, steps]), np.concatenate([old_values, values]))
    last = chain[-1]
    joins = ", ".join(f"{a.id} to t_env {b.resumed_from.get('t_env')}" for a, b in zip(chain, chain[1:]))
    problems = [f"resumed run: {joins}, then {last.id}"] + [p for attempt in chain for p in attempt.problems]
    config = dict(last.config, seed=chain[0].seed) if isinstance(last.config, dict) else last.config
    return Run(id=last.id, config=config, status=last.status, start_time=chain[0].start_time,
               stop_time=last.stop_time, heartbeat=last.heartbeat, metrics=metrics, problems=problems,
               stale=last.stale, diverged=next((a.diverged for a in chain if a.diverged), None),
               unique_token=last.unique_token, resumed_from=chain[0].resumed_from)


def join_resumed(runs):
    """The runs with every resumed run joined to the attempts it continues (its info `resumed_from` names the
    earlier attempt's unique_token): a run killed and resumed by hand with checkpoint_path= is one record, and
    the earlier attempts (left RUNNING or INTERRUPTED) are no longer listed on their own."""
    by_token = {run.unique_token: run for run in runs if run.unique_token}

    def parent(run):
        found = by_token.get((run.resumed_from or {}).get("unique_token"))
        return found if found is not run else None

    continued = {id(p) for p in map(parent, runs) if p is not None}
    joined = []
    for run in runs:
        if id(run) in continued:
            continue
        chain = [run]
        while parent(chain[0]) is not None and parent(chain[0]) not in chain:
            chain.insert(0, parent(chain[0]))
        joined.append(run if len(chain) == 1 else _joined(chain))
    return joined


def _apply_run_info(run, run_doc):
    run.status = str(run_doc.get("status") or UNKNOWN_STATUS)
    run.start_time = parse_time(run_doc.get("start_time"))
    run.stop_time = parse_time(run_doc.get("stop_time"))
    run.heartbeat = parse_time(run_doc.get("heartbeat"))


def read_run_dir(path, run_id):
    """One FileStorageObserver run folder as a `Run`; never raises on damaged contents."""
    problems = []
    config, problem = _read_json(os.path.join(path, "config.json"))
    if problem:
        problems.append(problem)
    elif not isinstance(config, dict):
        problems.append("config.json is not a JSON object")
        config = None
    run = Run(id=run_id, config=config, status=UNKNOWN_STATUS, problems=problems)

    run_doc, problem = _read_json(os.path.join(path, "run.json"))
    if problem:
        problems.append(problem)
    elif not isinstance(run_doc, dict):
        problems.append("run.json is not a JSON object")
    else:
        _apply_run_info(run, run_doc)

    info, info_problem = _read_json(os.path.join(path, "info.json"))
    metrics, metrics_problem = _read_json(os.path.join(path, "metrics.json"))
    if info_problem is None and not isinstance(info, dict):
        info_problem = "info.json is not a JSON object"
    if metrics_problem is None and not isinstance(metrics, dict):
        metrics_problem = "metrics.json is not a JSON object"
    merged = metrics_from_info(info, problems) if info_problem is None else {}
    if metrics_problem is None:
        merged.update(metrics_from_sacred(metrics, problems))
    else:
        problems.append(metrics_problem + ("; read info.json" if merged else ""))
    # a missing info.json is normal (Sacred writes it only once `_run.info` has content) if metrics.json is there
    if info_problem and not (info_problem.endswith("missing") and metrics_problem is None):
        problems.append(info_problem)
    run.metrics = merged
    run.diverged = divergence_of(info if info_problem is None else None, merged)
    _apply_identity(run, info if info_problem is None else None)
    return run


def load_file_runs(root):
    """Every Sacred run folder below `root` (recursive; `_sources`-style folders are skipped)."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise RecordError(f"results directory not found: {root}")
    runs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("_"))
        is_record = any(name in RECORD_FILES for name in filenames)
        is_empty_run_dir = not dirnames and not filenames and os.path.basename(dirpath).isdigit()
        if not (is_record or is_empty_run_dir):
            continue
        dirnames[:] = []
        rel = os.path.relpath(dirpath, root)
        run_id = os.path.basename(dirpath) if rel == "." else rel.replace(os.sep, "/")
        if is_empty_run_dir:
            runs.append(Run(id=run_id, config=None, status=UNKNOWN_STATUS, problems=["empty run folder"]))
        else:
            runs.append(read_run_dir(dirpath, run_id))
    return runs


def load_mongo_runs(db):
    """Every run in a Sacred MongoObserver database (`runs` and `metrics` collections of `db`)."""
    fields = {"config": 1, "status": 1, "start_time": 1, "stop_time": 1, "heartbeat": 1, "info": 1}
    docs = list(db["runs"].find({}, fields))
    by_run = defaultdict(dict)
    for doc in db["metrics"].find({}, {"run_id": 1, "name": 1, "steps": 1, "values": 1}):
        by_run[doc.get("run_id")][doc.get("name")] = doc
    runs = []
    for doc in docs:
        problems = []
        config = doc.get("config")
        if not isinstance(config, dict):
            problems.append("run document has no config")
            config = None
        run = Run(id=str(doc["_id"]), config=config, status=UNKNOWN_STATUS, problems=problems)
        _apply_run_info(run, doc)
        merged = metrics_from_info(doc.get("info"), problems, label="info")
        stored = {name: entry for name, entry in by_run.get(doc["_id"], {}).items() if isinstance(name, str)}
        merged.update(metrics_from_sacred(stored, problems, label="metrics"))
        if not merged:
            problems.append("no metrics")
        run.metrics = merged
        run.diverged = divergence_of(doc.get("info"), merged)
        _apply_identity(run, doc.get("info"))
        runs.append(run)
    return runs


def mark_stale(runs, now, minutes):
    """Flag RUNNING runs whose last heartbeat (or start) is more than `minutes` before `now` (naive UTC)."""
    for run in runs:
        last_sign = run.heartbeat or run.start_time
        if run.status == "RUNNING" and last_sign is not None:
            run.stale = (now - last_sign).total_seconds() > 60.0 * minutes


SQL_RUN_QUERY = "SELECT run_id, status, start_time, heartbeat, stop_time, config, info FROM run"


def _sql_rows(url):
    """The rows of the `run` table of Sacred's SqlObserver schema at SQLAlchemy URL `url`."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
        engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as err:
        raise RecordError(f"cannot open SQL database {url!r}: {err}") from None
    database = parsed.database
    # SQLite would create an empty database file for a mistyped path
    if parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:") \
            and not os.path.isfile(database):
        raise RecordError(f"SQLite database not found: {os.path.abspath(database)} (from {url})")
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("run"):
                raise RecordError(f"{url} has no `run` table: not a database of Sacred's SqlObserver (-s)")
            return [dict(row) for row in connection.execute(sa.text(SQL_RUN_QUERY)).mappings()]
    except sa.exc.SQLAlchemyError as err:
        raise RecordError(f"cannot read SQL database {url}: {err}") from None
    finally:
        engine.dispose()


def _json_column(text, name, problems):
    """A JSON text column of the `run` table (Sacred stores config and info with jsonpickle's flatten)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as err:
        problems.append(f"{name} column is not valid JSON ({err})")
        return None


def load_sql_runs(url):
    """Every run in a database written by Sacred's SqlObserver (`-s URL`); metrics come from the `info` column."""
    runs = []
    for row in _sql_rows(url):
        problems = []
        config = _json_column(row["config"], "config", problems)
        if not isinstance(config, dict):
            problems.append("run row has no config")
            config = None
        run = Run(id=str(row["run_id"]), config=config, status=UNKNOWN_STATUS, problems=problems)
        _apply_run_info(run, row)
        info = _json_column(row["info"], "info", problems)
        run.metrics = metrics_from_info(info, problems, label="info")
        run.diverged = divergence_of(info, run.metrics)
        _apply_identity(run, info)
        if not run.metrics:
            problems.append("no metrics")
        runs.append(run)
    return runs
