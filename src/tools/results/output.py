"""Rendering of command results as an aligned text table, CSV, JSON or markdown.

A command returns `Section`s: raw rows (dicts of plain values, what CSV and JSON print) plus display columns
(header and a function that formats one row, what the table and markdown print) and notes. CSV and JSON carry the
raw values at full precision; notes go to stderr for CSV so that stdout stays one valid CSV document.
"""
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime

FORMATS = ("table", "csv", "json", "markdown")


@dataclass
class Section:
    kind: str  # what one row is: runs, compare, curves, aggregate, improvement
    title: str
    columns: list  # [(header, row -> str)]
    rows: list = field(default_factory=list)  # raw values
    notes: list = field(default_factory=list)


def fmt_num(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_ci(mean, ci, digits=3):
    if mean is None:
        return "-"
    if ci is None:
        return fmt_num(mean, digits)
    return f"{fmt_num(mean, digits)} [{fmt_num(ci[0], digits)}, {fmt_num(ci[1], digits)}]"


def fmt_steps(value):
    return "-" if value is None else str(int(round(value)))


def fmt_duration(seconds):
    if seconds is None or seconds < 0:  # clocks of different hosts can disagree
        return "-"
    total = int(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _text_table(section):
    headers = [h for h, _ in section.columns]
    body = [[fn(row) for _, fn in section.columns] for row in section.rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = [section.title]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    if not body:
        lines.append("(no rows)")
    lines += [f"note: {n}" for n in section.notes]
    return "\n".join(lines)


def _md_cell(text):
    return text.replace("|", "\\|")


def _markdown(section):
    lines = [f"**{section.title}**", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h, _ in section.columns) + " |")
    lines.append("|" + "|".join("---" for _ in section.columns) + "|")
    for row in section.rows:
        lines.append("| " + " | ".join(_md_cell(fn(row)) for _, fn in section.columns) + " |")
    if not section.rows:
        lines.append("| " + " | ".join(["-"] * len(section.columns)) + " |")
    if section.notes:
        lines.append("")
        lines += [f"- {n}" for n in section.notes]
    return "\n".join(lines)


def _csv(sections, out, err):
    kinds = {s.kind for s in sections}
    keys = ["table"] if len(kinds) > 1 else []
    for section in sections:
        for row in section.rows:
            keys += [k for k in row if k not in keys]
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for section in sections:
        for row in section.rows:
            plain = {}
            for key, value in row.items():
                value = _plain(value)
                if isinstance(value, list):  # seed ids "1 2 3"; notes "a; b"
                    value = ("; " if any(isinstance(v, str) for v in value) else " ").join(str(v) for v in value)
                plain[key] = value
            if len(kinds) > 1:
                plain["table"] = section.kind
            writer.writerow(plain)
    for section in sections:
        for note in section.notes:
            print(f"note: {note}", file=err)


def render(sections, fmt, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    if fmt == "table":
        print("\n\n".join(_text_table(s) for s in sections), file=out)
    elif fmt == "markdown":
        print("\n\n".join(_markdown(s) for s in sections), file=out)
    elif fmt == "json":
        doc = [{"table": s.kind, "title": s.title, "rows": [{k: _plain(v) for k, v in r.items()} for r in s.rows],
                "notes": s.notes} for s in sections]
        print(json.dumps(doc, indent=2), file=out)
    elif fmt == "csv":
        _csv(sections, out, err)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
