"""Streaming metric base: ``update()`` once per image, ``aggregate()`` at the end.

Every metric object keeps one row of scalar values per image, so the per-image
table and the dataset mean come from the same numbers. Means ignore NaN and
infinite values (a distance is infinite when exactly one of the two masks is
empty) and ``aggregate()`` reports how many values each mean left out under
``"<name>_excluded"`` when that count is not zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np


def finite_mean(values: Iterable[float]) -> tuple[float, int]:
    """Mean of the finite values and the number of values left out (NaN or +-inf).

    The mean of no finite value is NaN.
    """
    arr = np.asarray(list(values), dtype=np.float64)
    ok = np.isfinite(arr)
    excluded = int(arr.size - ok.sum())
    return (float(arr[ok].mean()) if ok.any() else math.nan), excluded


class StreamingMetric:
    """Collects one dict of scalar values per image; subclasses implement :meth:`compute`."""

    #: names of the values :meth:`compute` returns, in table order
    names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.ids: list[str] = []

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.rows.clear()
        self.ids.clear()

    def compute(self, *args, **kwargs) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, *args, id: str | None = None, **kwargs) -> dict[str, float]:
        """Score one image, remember the row and return it."""
        row = self.compute(*args, **kwargs)
        self.add_row(row, id=id)
        return row

    def add_row(self, row: Mapping[str, float], id: str | None = None) -> None:
        """Record an already computed row (used by the parallel evaluator)."""
        self.rows.append({k: float(v) for k, v in row.items()})
        self.ids.append(id if id is not None else str(len(self.ids)))

    def aggregate(self) -> dict[str, float]:
        """Mean over the images of every value (finite values only), plus ``count``."""
        out: dict[str, float] = {}
        names = self.names or (tuple(self.rows[0]) if self.rows else ())
        for name in names:
            mean, excluded = finite_mean(row[name] for row in self.rows if name in row)
            out[name] = mean
            if excluded:
                out[f"{name}_excluded"] = excluded
        out["count"] = len(self.rows)
        return out

    def __len__(self) -> int:
        return len(self.rows)
