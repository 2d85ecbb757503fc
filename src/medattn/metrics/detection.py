"""Detection: FROC from scored boxes (lesion / polyp detection).

A predicted box *hits* a ground-truth box of the same image when their IoU is
at least ``iou_threshold``; a box that hits several is assigned to the one it
overlaps most. Then, as in the CAMELYON16 evaluation code that MONAI's
``compute_froc_curve_data`` reproduces:

* a ground-truth box is found with the highest score among the boxes that hit
  it (score 0 when none does); further hits on it are neither TP nor FP;
* a box that hits nothing is a false positive;
* the curve has one point per distinct score s (FP per image and sensitivity
  counting boxes scored >= s), skipping the lowest score, plus (0, 0);
* sensitivities at N false positives per image are linear interpolations on
  that curve, and the FROC score is their mean over ``fps_per_image``.

Boxes are ``(x1, y1, x2, y2)`` with ``x2 > x1`` (continuous coordinates; area = (x2-x1)(y2-y1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_FPS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N, 4) and ``b`` (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class FrocResult:
    """FROC curve and summary."""

    fps: np.ndarray  # false positives per image, one per curve point (decreasing)
    sensitivity: np.ndarray  # sensitivity at the same points
    fps_per_image: tuple[float, ...]
    sensitivities: dict[float, float] = field(default_factory=dict)  # N -> sensitivity at N FP/image
    score: float = 0.0  # mean of ``sensitivities`` over ``fps_per_image``
    num_targets: int = 0
    num_images: int = 0
    fp_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tp_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # one per target, 0 = missed


def match_detections(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of false-positive boxes and, per ground-truth box, its best hit score (0 if missed)."""
    if not (len(pred_boxes) == len(pred_scores) == len(gt_boxes)):
        raise ValueError("pred_boxes, pred_scores and gt_boxes need one entry per image")
    fp_scores: list[np.ndarray] = []
    tp_scores: list[np.ndarray] = []
    for boxes, scores, gts in zip(pred_boxes, pred_scores, gt_boxes, strict=True):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        gts = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores in one image")
        best = np.zeros(len(gts))
        if len(gts) and len(boxes):
            ious = box_iou(boxes, gts)
            hit = ious.max(axis=1) >= iou_threshold
            target = ious.argmax(axis=1)
            np.maximum.at(best, target[hit], scores[hit])
            fp_scores.append(scores[~hit])
        else:
            fp_scores.append(scores)
        tp_scores.append(best)
    return np.concatenate(fp_scores or [np.zeros(0)]), np.concatenate(tp_scores or [np.zeros(0)])


def froc_curve(
    fp_scores: np.ndarray, tp_scores: np.ndarray, num_targets: int, num_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """(FP per image, sensitivity) at every distinct score but the lowest, then (0, 0)."""
    fp_sorted = np.sort(np.asarray(fp_scores, dtype=np.float64))
    tp_sorted = np.sort(np.asarray(tp_scores, dtype=np.float64))
    thresholds = np.unique(np.concatenate([fp_sorted, tp_sorted]))[1:]
    # counts of scores >= t via binary search instead of one pass per threshold
    fps = fp_sorted.size - np.searchsorted(fp_sorted, thresholds, side="left")
    tps = tp_sorted.size - np.searchsorted(tp_sorted, thresholds, side="left")
    fps = np.append(fps, 0) / float(num_images)
    sens = np.append(tps, 0) / float(max(num_targets, 1))
    return fps, sens


def sensitivity_at_fp(result: FrocResult, n: float) -> float:
    """Sensitivity at ``n`` false positives per image (linear interpolation on the curve)."""
    return float(np.interp(n, result.fps[::-1], result.sensitivity[::-1]))


def froc(
    pred_boxes_per_image: Sequence[np.ndarray],
    pred_scores_per_image: Sequence[np.ndarray],
    gt_boxes_per_image: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    fps_per_image: Sequence[float] = DEFAULT_FPS,
) -> FrocResult:
    """FROC analysis of scored boxes against ground-truth boxes.

    >>> r = froc([[[0, 0, 10, 10], [50, 50, 60, 60]]], [[0.9, 0.8]], [[[0, 0, 10, 10]]])
    >>> r.sensitivities[1.0]
    1.0
    """
    fp_scores, tp_scores = match_detections(
        pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image, iou_threshold
    )
    num_images = len(gt_boxes_per_image)
    if num_images == 0:
        raise ValueError("FROC needs at least one image")
    fps, sens = froc_curve(fp_scores, tp_scores, len(tp_scores), num_images)
    result = FrocResult(
        fps=fps,
        sensitivity=sens,
        fps_per_image=tuple(float(x) for x in fps_per_image),
        num_targets=len(tp_scores),
        num_images=num_images,
        fp_scores=fp_scores,
        tp_scores=tp_scores,
    )
    interp = np.interp(result.fps_per_image, fps[::-1], sens[::-1])
    result.sensitivities = {n: float(s) for n, s in zip(result.fps_per_image, interp, strict=True)}
    result.score = float(np.mean(interp)) if len(interp) else float("nan")
    return result
