"""Segmentation overlap and surface-distance metrics on binary masks (2-D or 3-D).

Empty masks (documented in docs/metrics.md):

* a ratio whose denominator is 0 (e.g. Dice of two empty masks) is 1 when
  prediction and ground truth agree exactly, otherwise 0; so two empty masks
  have Dice = IoU = precision = recall = 1 (MONAI's ``ignore_empty=False``);
* HD95 and ASSD are 0 when both masks are empty and ``inf`` when exactly one
  is; means skip infinite values and report how many they skipped.

Surfaces are the mask pixels removed by one binary erosion (face
connectivity, outside the image counts as background), as in MONAI's
``get_mask_edges``; distances are Euclidean, in pixels or, given ``spacing``,
in physical units (mm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medattn.metrics.base import StreamingMetric

#: the per-image values of :func:`segmentation_scores`, in report order
SEGMENTATION_NAMES = ("dice", "iou", "precision", "recall", "specificity", "accuracy")
DISTANCE_NAMES = ("hd95", "assd")


def binarize(pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground of a prediction: ``p > threshold`` for floats, ``v > 127`` for 8-bit maps."""
    pred = np.asarray(pred)
    if pred.dtype == np.bool_:
        return pred
    if pred.dtype == np.uint8:
        return pred > math.floor(threshold * 255)  # v/255 > t; 0.5 gives v > 127, the mask rule of medattn.io
    return pred > threshold


def confusion(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of two boolean masks of the same shape."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    tp = int(np.count_nonzero(pred & gt))
    n_pred = int(np.count_nonzero(pred))
    n_gt = int(np.count_nonzero(gt))
    fp = n_pred - tp
    fn = n_gt - tp
    return tp, fp, fn, gt.size - tp - fp - fn


def _ratio(num: float, den: float, perfect: bool) -> float:
    if den == 0:
        return 1.0 if perfect else 0.0
    return num / den


def scores_from_confusion(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dice, IoU, precision, recall, specificity, accuracy from the four counts."""
    perfect = fp == 0 and fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, perfect),
        "iou": _ratio(tp, tp + fp + fn, perfect),
        "precision": _ratio(tp, tp + fp, perfect),
        "recall": _ratio(tp, tp + fn, perfect),
        "specificity": _ratio(tn, tn + fp, perfect),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, perfect),
    }


def segmentation_scores(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Overlap scores of a prediction (binarised at ``threshold``) against a boolean mask."""
    return scores_from_confusion(*confusion(binarize(pred, threshold), gt))


def dice(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
    """Dice coefficient 2|P∩G| / (|P| + |G|)."""
    return segmentation_scores(pred, gt, threshold)["dice"]


def iou(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union |P∩G| / |P∪G| (Jaccard index)."""
    return segmentation_scores(pred, gt, threshold)["iou"]


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask ^ ndimage.binary_erosion(mask, border_value=0)


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: float | Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each prediction surface point to the ground-truth surface, and back.

    Both masks must be non-empty. The work is done on the bounding box of the
    two masks (plus one pixel), which does not change any distance.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    union = pred | gt
    box = tuple(
        slice(max(0, int(idx.min()) - 1), int(idx.max()) + 2) for idx in np.nonzero(union)
    )
    pred, gt = pred[box], gt[box]
    if spacing is not None:
        spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (pred.ndim,))
    sp, sg = _surface(pred), _surface(gt)
    to_gt = ndimage.distance_transform_edt(~sg, sampling=spacing)[sp]
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)[sg]
    return to_gt, to_pred


def _empty_rule(pred: np.ndarray, gt: np.ndarray) -> float | None:
    has_p, has_g = bool(np.any(pred)), bool(np.any(gt))
    if not has_p and not has_g:
        return 0.0
    if has_p != has_g:
        return math.inf
    return None


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: float | Sequence[float] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance (the larger of the two directed 95th percentiles).

    Percentiles use linear interpolation, as ``numpy.percentile`` and MONAI's
    ``compute_hausdorff_distance(percentile=95)``.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    special = _empty_rule(pred, gt)
    if special is not None:
        return special
    a, b = surface_distances(pred, gt, spacing)
    return float(max(np.percentile(a, 95), np.percentile(b, 95)))


def assd(pred: np.ndarray, gt: np.ndarray, spacing: float | Sequence[float] | None = None) -> float:
    """Average symmetric surface distance: mean over both surfaces' point-to-surface distances."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    special = _empty_rule(pred, gt)
    if special is not None:
        return special
    a, b = surface_distances(pred, gt, spacing)
    return float((a.sum() + b.sum()) / (a.size + b.size))


class SegmentationMetrics(StreamingMetric):
    """Streaming overlap (and optionally distance) metrics at one threshold.

    >>> import numpy as np
    >>> m = SegmentationMetrics(distances=True)
    >>> gt = np.zeros((16, 16), bool); gt[4:12, 4:12] = True
    >>> _ = m.update(gt, gt)
    >>> m.aggregate()["dice"], m.aggregate()["hd95"]
    (1.0, 0.0)
    """

    def __init__(
        self,
        threshold: float = 0.5,
        distances: bool = False,
        spacing: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.distances = distances
        self.spacing = spacing
        self.names = SEGMENTATION_NAMES + (DISTANCE_NAMES if distances else ())

    def compute(
        self, pred: np.ndarray, gt: np.ndarray, spacing: float | Sequence[float] | None = None
    ) -> dict[str, float]:
        p = binarize(pred, self.threshold)
        g = np.asarray(gt, dtype=bool)
        row = scores_from_confusion(*confusion(p, g))
        if self.distances:
            sp = spacing if spacing is not None else self.spacing
            row["hd95"] = hd95(p, g, sp)
            row["assd"] = assd(p, g, sp)
        return row
