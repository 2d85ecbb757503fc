"""Tables of an :class:`EvalResult`: Markdown (mean row), CSV (per image + mean), JSON."""

from __future__ import annotations

import csv
import io
import json
import math

from medattn.evaluation.evaluator import METRIC_NAMES, EvalResult

FORMATS = ("md", "csv", "json")


def _cell(value: float, digits: int) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def to_markdown(result: EvalResult, digits: int = 4) -> str:
    """One Markdown table row per result: name, count and the data-set value of every metric."""
    header = ["name", "count", *METRIC_NAMES]
    row = [result.name or "-", str(result.count), *(_cell(result.mean[k], digits) for k in METRIC_NAMES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def to_csv(result: EvalResult) -> str:
    """Per-image rows, then a row with id ``mean`` (full precision)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *METRIC_NAMES])
    for row in result.images:
        writer.writerow([row["id"], *(repr(float(row[k])) for k in METRIC_NAMES)])
    writer.writerow(["mean", *(repr(float(result.mean[k])) for k in METRIC_NAMES)])
    return buf.getvalue()


def to_json(result: EvalResult) -> str:
    """JSON with one key per metric, ``name``, ``count`` and the per-image rows under ``images``."""
    return json.dumps(result.to_dict(), indent=2) + "\n"


def render(result: EvalResult, fmt: str) -> str:
    """Text of ``result`` in one of :data:`FORMATS`."""
    if fmt == "md":
        return to_markdown(result)
    if fmt == "csv":
        return to_csv(result)
    if fmt == "json":
        return to_json(result)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
