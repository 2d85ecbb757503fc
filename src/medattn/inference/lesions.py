"""Per-lesion measurements from a probability map: connected components of the mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage


def measure_lesions(prob: np.ndarray, threshold: float = 0.5, spacing: Sequence[float] | None = None,
                    min_area: int = 1) -> list[dict[str, Any]]:
    """One record per connected lesion (8-connectivity), largest first.

    Each record: ``area_px``, ``area_mm2`` (``None`` without ``spacing`` =
    (row, column) pixel size in mm), ``bbox`` = [x0, y0, x1, y1] (inclusive
    pixel coordinates), ``centroid`` = [x, y], ``mean_confidence`` = mean
    probability inside the lesion, ``max_confidence``.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"expected a 2D probability map, got shape {prob.shape}")
    mask = prob > threshold
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    areas = ndimage.sum_labels(mask, labels, idx).astype(int)
    means = ndimage.mean(prob, labels, idx)
    maxes = ndimage.maximum(prob, labels, idx)
    centroids = ndimage.center_of_mass(mask, labels, idx)
    boxes = ndimage.find_objects(labels)
    px_mm2 = float(spacing[0]) * float(spacing[1]) if spacing is not None and len(spacing) >= 2 else None
    out = []
    for i in range(n):
        if areas[i] < min_area:
            continue
        sl = boxes[i]
        out.append({
            "area_px": int(areas[i]),
            "area_mm2": float(areas[i] * px_mm2) if px_mm2 is not None else None,
            "bbox": [int(sl[1].start), int(sl[0].start), int(sl[1].stop - 1), int(sl[0].stop - 1)],
            "centroid": [round(float(centroids[i][1]), 2), round(float(centroids[i][0]), 2)],
            "mean_confidence": round(float(means[i]), 4),
            "max_confidence": round(float(maxes[i]), 4),
        })
    out.sort(key=lambda r: -r["area_px"])
    return out
