"""`python -m tools.results {list,compare,plot,aggregate,profile}`: query Sacred records (see docs/results.md)."""
import argparse
import dataclasses
import math
import os
import re
import sys
from datetime import datetime, timedelta, timezone

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tools.results import commands
from tools.results.output import FORMATS, render
from tools.results.records import (RecordError, join_resumed, load_file_runs, load_mongo_runs, load_sql_runs,
                                   mark_stale)

DEFAULT_ROOT = "results/sacred"
# the checkout this tool runs from (src/tools/results/cli.py); src/main.py writes results/sacred below it
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def checkout_of(folder):
    """The checkout (a folder holding src/main.py) that holds `folder`, or None."""
    folder = os.path.abspath(folder)
    while True:
        if os.path.isfile(os.path.join(folder, "src", "main.py")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def default_root():
    """results/sacred of the checkout holding the working directory (a second clone reads its own runs), else of
    the checkout this tool runs from, else ./results/sacred. main() says which folder it read."""
    checkout = checkout_of(os.getcwd()) or checkout_of(REPO_ROOT)
    return os.path.join(checkout, DEFAULT_ROOT) if checkout else DEFAULT_ROOT


def _csv_list(text):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _steps(text):
    """50000, 5e4, 50k, 1.5M -> int env steps."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a step count: {text!r} (e.g. 50000, 5e4, 50k, 2M)")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if not math.isfinite(value):  # 1e999: no run reaches it and int() of it would overflow
        raise argparse.ArgumentTypeError(f"not a finite step count: {text!r}")
    return int(round(value))


def _finite(text):
    """A finite real number (a threshold: nan would never be reached and inf always missed)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _budgets(text):
    return sorted({_steps(t) for t in _csv_list(text)})


def _where(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _since(text):
    """An ISO date/time (UTC, as Sacred stores it) or an age such as 30m, 12h, 7d."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd])", text.strip())
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return _utcnow() - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date/time or age: {text!r} (e.g. 2024-05-01, "
                                         f"'2024-05-01 12:00', 12h, 7d)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _pairs(text):
    pairs = []
    # group labels such as mazero[lr=0.001, seed_x=1] hold commas: split only outside brackets
    for item in (t.strip() for t in re.split(r",(?![^\[]*\])", text) if t.strip()):
        x, sep, y = item.partition(":")
        if not sep or not x or not y:
            raise argparse.ArgumentTypeError(f"expected A:B pairs, got {item!r}")
        pairs.append((x, y))
    return pairs


def _bound(text):
    name, sep, rng = text.partition("=")
    lo, sep2, hi = rng.partition(":")
    try:
        lo, hi = float(lo), float(hi)
    except ValueError:
        lo = hi = None
    if not sep or not sep2 or lo is None or not hi > lo:
        raise argparse.ArgumentTypeError(f"expected MAP=LO:HI with LO < HI, got {text!r}")
    return name, (lo, hi)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _common_parser():
    """The source, selection, grouping, metric and format options every sub-command takes."""
    common = argparse.ArgumentParser(add_help=False)
    source = common.add_argument_group("source (one of)")
    source.add_argument("--root", action="append",
                        help=f"FileStorageObserver directory, searched recursively (default: the repository's "
                             f"{DEFAULT_ROOT}, found from any working directory); repeat it to read several "
                             f"together (run ids then start with each folder's name)")
    source.add_argument("--mongo", metavar="URL",
                        help="MongoDB of a Sacred MongoObserver: mongodb://host:port, host:port, or host:port:db "
                             "(the form of Sacred's -m flag)")
    source.add_argument("--db", help="database name with --mongo (default sacred)")
    source.add_argument("--sql", metavar="URL",
                        help="database of a Sacred SqlObserver (the -s flag), any SQLAlchemy URL: "
                             "sqlite:///runs.db, postgresql://user:pw@host/db")
    sel = common.add_argument_group("selection")
    sel.add_argument("--alg", type=_csv_list, help="algorithm names (config `name`), comma-separated")
    sel.add_argument("--map", type=_csv_list,
                     help="maps (env_args.map_name, else env_args.key, else env), comma-separated")
    sel.add_argument("--status", type=_csv_list,
                     help="statuses, comma-separated: COMPLETED, RUNNING, FAILED, INTERRUPTED, UNKNOWN; "
                          "STALE = RUNNING with a stale heartbeat")
    sel.add_argument("--where", type=_where, action="append", default=[], metavar="KEY=VALUE",
                     help="config filter on a dotted key, e.g. env_args.map_name=3m (repeatable, all must hold)")
    sel.add_argument("--since", type=_since, help="started at or after: ISO date/time (UTC) or age like 12h, 7d")
    sel.add_argument("--stale-minutes", type=float, default=10.0,
                     help="a RUNNING run whose heartbeat is older than this is shown as stale (default 10)")
    grouping = common.add_mutually_exclusive_group()
    grouping.add_argument("--group-by", type=_csv_list, metavar="KEY[,KEY]",
                          help="group the runs of one algorithm name by these config keys only (default: every "
                               "key whose value differs between them, seed and record keys aside)")
    grouping.add_argument("--label", metavar="KEY",
                          help="name and group runs by the value of this config key alone (`--label name`: "
                               "one group per algorithm name, e.g. runs of one config across commits that added "
                               "keys)")
    common.add_argument("--metric", help="metric to report (default: test_battle_won_mean, or test_return_mean "
                                         "where a run/map has no win rate)")
    common.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    return common


def _shared_parsers():
    """The option groups several sub-commands share: (incomplete runs, bootstrap statistics, budget rule)."""
    incomplete = argparse.ArgumentParser(add_help=False)
    incomplete.add_argument("--include-incomplete", action="store_true",
                            help="also use runs that are RUNNING, FAILED, INTERRUPTED or UNKNOWN")
    stat = argparse.ArgumentParser(add_help=False, parents=[incomplete])
    stat.add_argument("--reps", type=_positive_int, default=2000, help="bootstrap resamples (default 2000)")
    stat.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")
    budget = argparse.ArgumentParser(add_help=False)
    budget.add_argument("--nearest", action="store_true",
                        help="value at a budget = the evaluation nearest to it (default: the last one at or before)")
    return incomplete, stat, budget


def build_parser():
    common = _common_parser()
    incomplete, stat, budget = _shared_parsers()
    parser = argparse.ArgumentParser(prog="python -m tools.results",
                                     description="Query Sacred experiment records of the MARL harness.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,compare,plot,aggregate,profile}")
    sub.add_parser("list", parents=[common], help="one row per run",
                   description="One row per run: id, group label, map, seed, kind (train or eval), status, start, "
                               "duration, final t_env, last and best value of the metric, and what could not be "
                               "read.")
    cmp_parser = sub.add_parser("compare", parents=[common, stat, budget], help="per map, algorithms side by side",
                                description="Per map, one row per configuration group: seeds (each counted "
                                            "once), mean and 95 % bootstrap CI of the metric at env-step budgets, "
                                            "steps to reach a threshold.")
    cmp_parser.add_argument("--at", type=_budgets, default=[],
                            help="env-step budgets, comma-separated (50000,100k,1M): the last evaluation at or "
                                 "before each (see --nearest); default: final evaluation")
    cmp_parser.add_argument("--threshold", type=_finite, help="report env steps to first reach this value")
    cmp_parser.add_argument("--timing", action="store_true",
                            help="add each group's mean wall-clock per run and env steps per second")
    plot_parser = sub.add_parser("plot", parents=[common, stat], help="learning curves to PNG and PDF",
                                 description="Learning curves per map (mean over seeds, shaded 95 % bootstrap "
                                             "CI), algorithms overlaid, written as PNG and PDF.")
    plot_parser.add_argument("--out", default="results/plots/learning_curves",
                             help="output path; .png and .pdf are written (default results/plots/learning_curves)")
    plot_parser.add_argument("--smooth", type=_positive_int, default=1,
                             help="trailing moving average over this many evaluations (default 1 = none)")
    plot_parser.add_argument("--points", type=_positive_int, default=200,
                             help="points of the common env-step grid (default 200)")
    profile_parser = sub.add_parser("profile", parents=[common, budget, incomplete],
                                    help="where a run's wall-clock went, per stretch of env steps",
                                    description="Per map, one row per run and stretch of env steps: wall-clock, "
                                                "env steps/s, updates/s, and each part's cost and share from the "
                                                "time profile the run logs (time_share_* metrics; MAZero's run "
                                                "loop), then a row for the whole run.")
    profile_parser.add_argument("--at", type=_budgets, default=[],
                                help="env steps where stretches end, comma-separated (10k,20k,50k): each ends at "
                                     "the last profile log at or before it (see --nearest); default: the whole run "
                                     "only")
    profile_parser.add_argument("--per", choices=sorted(commands.PER_UNITS), default="env-step",
                                help="cost of each part in ms per env step (default) or per update")
    agg_parser = sub.add_parser("aggregate", parents=[common, stat, budget],
                                help="IQM, optimality gap, P(X > Y) over maps",
                                description="Across maps: interquartile mean and optimality gap of normalised "
                                            "scores with stratified-bootstrap 95 % CIs, and probability of "
                                            "improvement (Agarwal et al. 2021, Gorsane et al. 2022).")
    agg_parser.add_argument("--at", type=_steps, help="score = last evaluation at or before this many env steps "
                                                      "(see --nearest; default: final evaluation of each run)")
    agg_parser.add_argument("--pairs", type=_pairs, help="A:B[,C:D] pairs for P(A > B) (default: all pairs)")
    agg_parser.add_argument("--bounds", type=_bound, action="append", default=[], metavar="MAP=LO:HI",
                            help="normalise a non-win-rate metric on MAP as (x-LO)/(HI-LO) instead of min-max "
                                 "over runs (repeatable)")
    return parser


def mongo_target(mongo, db):
    """(URL, database name) from --mongo and --db; `host:port:db` is Sacred's `-m` form."""
    url = mongo
    sacred_form = re.fullmatch(r"([^:/]+:[0-9]+):([^:/]+)", mongo)
    if sacred_form:
        url, named = sacred_form.groups()
        if db is not None and db != named:
            raise RecordError(f"--mongo names database {named!r} but --db says {db!r}")
        db = named
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        url = "mongodb://" + url
    return url, db or "sacred"


def _load_mongo(mongo, db):
    url, db = mongo_target(mongo, db)
    # fail within 5 s when no server answers, unless the URL sets its own serverSelectionTimeoutMS
    timeout = {} if "serverselectiontimeoutms" in url.lower() else {"serverSelectionTimeoutMS": 5000}
    client = MongoClient(url, **timeout)
    try:
        return load_mongo_runs(client[db])
    except PyMongoError as err:
        raise RecordError(f"cannot read MongoDB {url} database {db!r}: {err}") from None
    finally:
        client.close()


def load_runs(args):
    given = [flag for flag, value in (("--root", args.root), ("--mongo", args.mongo), ("--sql", args.sql)) if value]
    if len(given) > 1:
        raise RecordError(f"give one of --root, --mongo, --sql, not {' and '.join(given)}")
    if args.db is not None and not args.mongo:
        raise RecordError("--db needs --mongo")
    if args.mongo:
        print(f"reading MongoDB {args.mongo}" + (f" database {args.db}" if args.db else ""), file=sys.stderr)
        return _load_mongo(args.mongo, args.db)
    if args.sql:
        print(f"reading {args.sql}", file=sys.stderr)
        return load_sql_runs(args.sql)
    roots = args.root or [default_root()]
    if args.root is None and not os.path.isdir(roots[0]):
        raise RecordError(f"results directory not found: {os.path.abspath(roots[0])} (no run recorded yet? "
                          f"give --root DIR, --mongo URL or --sql URL)")
    runs = []
    for root in roots:
        print(f"reading {os.path.abspath(root)}", file=sys.stderr)
        prefix = f"{os.path.basename(os.path.abspath(root))}/" if len(roots) > 1 else ""
        runs += [dataclasses.replace(run, id=prefix + run.id) for run in load_file_runs(root)]
    return runs


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "profile" and args.metric:
        parser.error("--metric: profile reports the run's time profile (time_share_* metrics), not a chosen metric")
    try:
        runs = load_runs(args)
    except RecordError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mark_stale(runs, _utcnow(), args.stale_minutes)
    runs = join_resumed(runs)
    runs = commands.filter_runs(runs, args.alg, args.map, args.status, args.where, args.since)
    try:
        grouping = (args.group_by, args.label)
        if args.command == "list":
            sections = commands.list_runs(runs, args.metric, grouping)
        elif args.command == "compare":
            sections = commands.compare(runs, args.metric, args.at, args.threshold, args.include_incomplete,
                                        args.reps, args.seed, grouping, args.nearest, args.timing)
        elif args.command == "plot":
            sections = commands.plot(runs, args.out, args.metric, args.smooth, args.points,
                                     args.include_incomplete, args.reps, args.seed, grouping)
        elif args.command == "profile":
            sections = commands.profile(runs, args.at, args.per, args.include_incomplete, grouping, args.nearest)
        else:
            sections = commands.aggregate(runs, args.metric, args.at, args.pairs, dict(args.bounds),
                                          args.include_incomplete, args.reps, args.seed, grouping, args.nearest)
    except commands.CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    render(sections, args.format)
    return 0
