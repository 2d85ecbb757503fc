"""Lesions of a segmentation: connected components, sizes in mm, mm² and mL.

A lesion is one connected component of the thresholded probability map: in a
volume one **3D** component (26-connectivity), counted once however many slices
it spans; in a 2D image one 8-connected component. Per lesion:

- ``number``: 1, 2, ... by decreasing size (the label drawn in the viewer and
  the row in the table and the report);
- ``area_px`` and ``area_mm2``: 2D area (volumes: of its largest cross-section);
- ``voxels`` and ``volume_ml``: volumes only (``volume_ml`` needs the spacing);
- ``longest_diameter_mm`` / ``longest_diameter_px``: maximum Feret diameter of
  the lesion in a slice (volumes: the largest over its slices, as RECIST measures
  axially), pixels taken as squares of the pixel spacing, so it spans the outer
  edges of the lesion; ``_mm`` is ``None`` when the spacing is unknown;
- ``slice`` (volumes): the 1-based number of the slice with its largest
  cross-section, ``slices``: [first, last] 1-based slice numbers; the viewer, the
  table and the report use the same 1-based numbers;
- ``bbox`` [x0, y0, x1, y1] (inclusive, in that slice), ``centroid`` [x, y],
  ``mean_confidence`` (mean probability inside), ``max_confidence``.

Specks are not lesions: a component whose largest cross-section has fewer than
``min_px`` pixels, or (spacing known) less than ``min_mm2``, is dropped. The model
card may set both (``min_lesion_px``, ``min_lesion_mm2``); see :func:`min_size_from_card`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

# Default speck size: 0.01 % of a slice, and never below 4 pixels.
DEFAULT_MIN_FRACTION = 1e-4
DEFAULT_MIN_PX = 4


@dataclass(frozen=True)
class MinSize:
    """The smallest lesion kept: at least ``px`` pixels and (spacing known) ``mm2`` in its largest cross-section."""

    px: int = DEFAULT_MIN_PX
    mm2: float | None = None


def min_size_from_card(card: Mapping[str, Any] | None, slice_shape: Sequence[int]) -> MinSize:
    """``min_lesion_px`` / ``min_lesion_mm2`` from a model card, else 0.01 % of the slice (at least 4 px)."""
    card = card or {}
    default_px = max(DEFAULT_MIN_PX, int(DEFAULT_MIN_FRACTION * int(np.prod(slice_shape[:2]))))
    px = card.get("min_lesion_px")
    mm2 = card.get("min_lesion_mm2")
    return MinSize(px=int(px) if px is not None else default_px, mm2=float(mm2) if mm2 is not None else None)


def feret_diameter(mask: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Maximum Feret diameter of a 2D mask: the longest distance between two points of its pixels.

    Pixels are squares (``spacing`` = (row, column) size, default 1), so a single
    pixel measures its diagonal and a row of ``n`` pixels ``sqrt(n² + 1)``.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {mask.shape}")
    return _max_distance(_hull_corners(mask), spacing) if mask.any() else 0.0


def _hull_corners(mask: np.ndarray) -> np.ndarray:
    """(N, 2) (row, column) pixel corners on the convex hull of a non-empty mask.

    Only these can be the ends of the longest chord, whatever the pixel spacing:
    scaling the axes maps the hull's vertices onto the scaled hull's vertices.
    """
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    r, c = np.nonzero(edge)
    offsets = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    pts = (np.stack([r, c], 1)[:, None, :] + offsets[None]).reshape(-1, 2).astype(float)
    try:
        return pts[ConvexHull(pts).vertices]
    except QhullError:  # degenerate (cannot happen for square pixels, but stay safe)
        return pts


def _max_distance(pts: np.ndarray, spacing: Sequence[float] | None) -> float:
    if spacing is not None:
        pts = pts * np.array([float(spacing[0]), float(spacing[1])])
    d = pts[:, None, :] - pts[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def find_lesions(prob: np.ndarray, threshold: float = 0.5, spacing: Sequence[float] | None = None,
                 min_size: MinSize | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Label the lesions of a 2D (H, W) or 3D (Z, H, W) probability map.

    ``spacing``: pixel size in mm in array-axis order ((row, column), or
    (slice, row, column) for a volume), or ``None``. Returns ``(labels, lesions)``:
    ``labels`` (uint16, same shape) holds each kept lesion's ``number`` (0 elsewhere).
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D probability map, got shape {prob.shape}")
    volume = prob.ndim == 3
    vol = prob if volume else prob[None]
    min_size = min_size or MinSize()
    sp = _spacing3(spacing, volume)
    mask = vol > threshold
    comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    found = []
    for idx, box in enumerate(ndimage.find_objects(comp), 1):
        if box is None:
            continue
        mask_box = comp[box] == idx
        largest = int(mask_box.reshape(mask_box.shape[0], -1).sum(1).max())
        if largest < min_size.px or (min_size.mm2 is not None and sp is not None
                                     and largest * sp[1] * sp[2] < min_size.mm2):
            continue  # a speck: not measured
        found.append((idx, _measure(mask_box, vol[box], box, sp)))
    found.sort(key=lambda t: (-t[1]["voxels"], -t[1]["area_px"]))
    if len(found) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(found)} lesions: more than a uint16 label map holds")
    lut = np.zeros(n + 1, np.uint16)
    lesions = []
    for number, (idx, rec) in enumerate(found, 1):
        lut[idx] = number
        rec["number"] = number
        if not volume:
            for key in ("voxels", "volume_ml", "slice", "slices"):
                rec.pop(key)
        lesions.append(rec)
    labels = lut[comp]
    return (labels if volume else labels[0]), lesions


def _spacing3(spacing: Sequence[float] | None, volume: bool) -> tuple[float | None, float, float] | None:
    """(slice, row, column) spacing in mm; the slice thickness is ``None`` when only the pixel size is known."""
    if spacing is None:
        return None
    sp = [float(s) for s in spacing]
    if len(sp) not in (2, 3) or not all(np.isfinite(s) and s > 0 for s in sp):
        return None
    if len(sp) == 2:
        return None, sp[0], sp[1]
    return (sp[0] if volume else None), sp[1], sp[2]


def _measure(mask: np.ndarray, prob: np.ndarray, box: tuple[slice, ...],
             sp: tuple[float | None, float, float] | None) -> dict[str, Any]:
    """Measurements of one component (``mask``/``prob`` cropped to its bounding ``box``)."""
    per_slice = mask.reshape(mask.shape[0], -1).sum(1)
    k = int(np.argmax(per_slice))
    z0 = box[0].start
    inplane = sp[1:] if sp is not None else None
    hulls = [_hull_corners(m) for m in mask if m.any()]
    diam_px = max(_max_distance(h, None) for h in hulls)
    diam_mm = max(_max_distance(h, inplane) for h in hulls) if inplane else None
    area = int(per_slice[k])
    rows, cols = np.nonzero(mask[k])
    vals = prob[mask]
    voxels = int(per_slice.sum())
    return {
        "area_px": area,
        "area_mm2": round(area * inplane[0] * inplane[1], 3) if inplane else None,
        "voxels": voxels,
        "volume_ml": round(voxels * sp[0] * sp[1] * sp[2] / 1000.0, 4) if sp and sp[0] else None,
        "longest_diameter_px": round(diam_px, 2),
        "longest_diameter_mm": round(diam_mm, 2) if diam_mm is not None else None,
        "slice": z0 + k + 1,
        "slices": [z0 + 1, z0 + mask.shape[0]],
        "bbox": [int(box[2].start + cols.min()), int(box[1].start + rows.min()),
                 int(box[2].start + cols.max()), int(box[1].start + rows.max())],
        "centroid": [round(float(box[2].start + cols.mean()), 2), round(float(box[1].start + rows.mean()), 2)],
        "mean_confidence": round(float(vals.mean()), 4),
        "max_confidence": round(float(vals.max()), 4),
    }
