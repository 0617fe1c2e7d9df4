"""`python -m tools.results {list,compare,plot,aggregate}`: query Sacred records (see docs/results.md)."""
import argparse
import re
import sys
from datetime import datetime, timedelta, timezone

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tools.results import commands
from tools.results.output import FORMATS, render
from tools.results.records import RecordError, load_file_runs, load_mongo_runs, mark_stale

DEFAULT_ROOT = "results/sacred"


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
    return int(round(value))


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
    for item in _csv_list(text):
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


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    source = common.add_argument_group("source (one of)")
    source.add_argument("--root",
                        help=f"FileStorageObserver directory, searched recursively (default {DEFAULT_ROOT})")
    source.add_argument("--mongo", metavar="URL",
                        help="MongoDB of a Sacred MongoObserver: mongodb://host:port, host:port, or host:port:db "
                             "(the form of Sacred's -m flag)")
    source.add_argument("--db", help="database name with --mongo (default sacred)")
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
    common.add_argument("--metric", help="metric to report (default: test_battle_won_mean, or test_return_mean "
                                         "where a run/map has no win rate)")
    common.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")

    stat = argparse.ArgumentParser(add_help=False)
    stat.add_argument("--include-incomplete", action="store_true",
                      help="also use runs that are RUNNING, FAILED, INTERRUPTED or UNKNOWN")
    stat.add_argument("--reps", type=_positive_int, default=2000, help="bootstrap resamples (default 2000)")
    stat.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default 0)")

    parser = argparse.ArgumentParser(prog="python -m tools.results",
                                     description="Query Sacred experiment records of the MARL harness.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,compare,plot,aggregate}")
    sub.add_parser("list", parents=[common], help="one row per run",
                   description="One row per run: id, algorithm, map, seed, status, start, duration, final t_env, "
                               "last and best value of the metric, and what could not be read.")
    cmp_parser = sub.add_parser("compare", parents=[common, stat], help="per map, algorithms side by side",
                                description="Per map, one row per algorithm: seeds, mean and 95 % bootstrap CI "
                                            "of the metric at env-step budgets, steps to reach a threshold.")
    cmp_parser.add_argument("--at", type=_budgets, default=[],
                            help="env-step budgets, comma-separated (50000,100k,1M); default: final evaluation")
    cmp_parser.add_argument("--threshold", type=float, help="report env steps to first reach this value")
    plot_parser = sub.add_parser("plot", parents=[common, stat], help="learning curves to PNG and PDF",
                                 description="Learning curves per map (mean over seeds, shaded 95 % bootstrap "
                                             "CI), algorithms overlaid, written as PNG and PDF.")
    plot_parser.add_argument("--out", default="results/plots/learning_curves",
                             help="output path; .png and .pdf are written (default results/plots/learning_curves)")
    plot_parser.add_argument("--smooth", type=_positive_int, default=1,
                             help="trailing moving average over this many evaluations (default 1 = none)")
    plot_parser.add_argument("--points", type=_positive_int, default=200,
                             help="points of the common env-step grid (default 200)")
    agg_parser = sub.add_parser("aggregate", parents=[common, stat], help="IQM, optimality gap, P(X > Y) over maps",
                                description="Across maps: interquartile mean and optimality gap of normalised "
                                            "scores with stratified-bootstrap 95 % CIs, and probability of "
                                            "improvement (Agarwal et al. 2021, Gorsane et al. 2022).")
    agg_parser.add_argument("--at", type=_steps, help="score = last evaluation at or before this many env steps "
                                                      "(default: final evaluation of each run)")
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


def load_runs(args):
    if args.mongo and args.root:
        raise RecordError("give --root or --mongo, not both")
    if args.mongo:
        url, db = mongo_target(args.mongo, args.db)
        # fail within 5 s when no server answers, unless the URL sets its own serverSelectionTimeoutMS
        timeout = {} if "serverselectiontimeoutms" in url.lower() else {"serverSelectionTimeoutMS": 5000}
        client = MongoClient(url, **timeout)
        try:
            return load_mongo_runs(client[db])
        except PyMongoError as err:
            raise RecordError(f"cannot read MongoDB {url} database {db!r}: {err}") from None
        finally:
            client.close()
    if args.db is not None:
        raise RecordError("--db needs --mongo")
    return load_file_runs(args.root or DEFAULT_ROOT)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args)
    except RecordError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mark_stale(runs, _utcnow(), args.stale_minutes)
    runs = commands.filter_runs(runs, args.alg, args.map, args.status, args.where, args.since)
    try:
        if args.command == "list":
            sections = commands.list_runs(runs, args.metric)
        elif args.command == "compare":
            sections = commands.compare(runs, args.metric, args.at, args.threshold, args.include_incomplete,
                                        args.reps, args.seed)
        elif args.command == "plot":
            sections = commands.plot(runs, args.out, args.metric, args.smooth, args.points,
                                     args.include_incomplete, args.reps, args.seed)
        else:
            sections = commands.aggregate(runs, args.metric, args.at, args.pairs, dict(args.bounds),
                                          args.include_incomplete, args.reps, args.seed)
    except commands.CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    render(sections, args.format)
    return 0
