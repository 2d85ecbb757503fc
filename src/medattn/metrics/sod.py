"""The PraNet / salient-object evaluation set on probability maps.

One pass over an image gives every score of the PraNet evaluation toolbox:
S-alpha (Fan et al., ICCV 2017), weighted F-beta (Margolin et al., CVPR 2014),
E-phi (Fan et al., IJCAI 2018; adaptive, and the curve over 256 thresholds),
Dice and IoU over the same 256 thresholds, and MAE. The definitions follow the
MATLAB toolbox and ``pysodmetrics`` step for step, so the numbers agree with
``pysodmetrics`` to 1e-12 (tested):

* the prediction is read as ``p = v / 255`` and min-max normalised when its
  maximum differs from its minimum (MATLAB ``mapminmax(im2double(...))``);
* the threshold curves binarise ``p >= t / 255`` for t = 0..255 after
  quantising with ``uint8(p * 255)``; at a threshold where prediction and
  ground truth are both empty Dice and IoU count 0, as in the toolbox;
* ``maxEm``/``maxDice`` of a data set are the maximum of the *mean* curve.

Speed comes from doing the work on the 256 grey levels instead of the pixels:
one ``bincount`` per image quadrant gives, per level, how many ground-truth
foreground and background pixels carry it; every score except wF follows from
these counts. wF needs a distance transform, which is done only on the crop
that can contribute (ground truth plus non-zero prediction), with a separable
form of MATLAB's ``fspecial('gaussian', 7, 5)``.

A *binary* prediction (a hard mask, not a probability map) has no threshold to
sweep: with ``binary=True`` the curve scores are the score of the mask itself,
so a mask compared with itself gets meanDice 1 (the toolbox would let the
threshold 0 turn every pixel on and report slightly less than 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medattn.metrics.base import StreamingMetric, finite_mean

EPS = float(np.spacing(1))  # MATLAB's eps, used by every toolbox formula

#: the per-image values of :func:`sod_scores`, in report order
SOD_NAMES = ("meanDice", "meanIoU", "Sm", "wFm", "meanEm", "maxEm", "adpEm", "maxDice", "MAE")


def _levels(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes per pixel and the float value ``v/255`` (or the float itself) of each code."""
    if pred.dtype == np.uint8:
        return pred, np.arange(256, dtype=np.float64) / 255
    if pred.dtype == np.bool_:
        return pred.view(np.uint8) * np.uint8(255), np.arange(256, dtype=np.float64) / 255
    if not np.issubdtype(pred.dtype, np.floating):
        raise ValueError(f"prediction must be uint8, bool or float in [0, 1], got {pred.dtype}")
    if pred.size and (not np.isfinite(pred).all() or pred.min() < 0 or pred.max() > 1):
        raise ValueError("a float prediction must hold finite values in [0, 1]")
    values, codes = np.unique(pred.astype(np.float64), return_inverse=True)
    return codes.reshape(pred.shape), values


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # not ``a @ b``: BLAS may start threads for this, which costs more than it saves here
    return float(np.multiply(a, b).sum())


def _ssim_from_hist(hist: np.ndarray, lut: np.ndarray) -> float:
    """The toolbox's region SSIM from per-level counts ``hist[0]`` (gt=0) and ``hist[1]`` (gt=1)."""
    both = hist[0] + hist[1]
    n = both.sum()
    if n == 0:
        return 0.0  # an empty quadrant has weight 0 anyway
    n1 = hist[1].sum()
    x = _dot(both, lut) / n
    y = n1 / n
    dx = lut - x
    denom = n - 1 + EPS
    sigma_x = _dot(both, (dx * dx)) / denom
    sigma_y = (n1 * (1 - y) ** 2 + (n - n1) * y**2) / denom
    sigma_xy = (_dot(hist[1], dx) * (1 - y) - _dot(hist[0], dx) * y) / denom
    alpha = 4 * x * y * sigma_xy
    beta = (x**2 + y**2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _s_object(counts: np.ndarray, values: np.ndarray) -> float:
    """Eq. (4) of the S-measure paper on the pixels described by ``counts`` per value."""
    n = counts.sum()
    mean = _dot(counts, values) / n
    std = math.sqrt(_dot(counts, (values - mean) ** 2) / (n - 1)) if n > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + EPS)


def _em_from_counts(fg_fg, fg_bg, n_fg: int, n: int):
    """E-phi (Eq. 6 of the E-measure paper) from the counts of predicted-foreground pixels."""
    fg_any = fg_fg + fg_bg
    bg_any = n - fg_any
    if n_fg == 0:
        total = bg_any
    elif n_fg == n:
        total = fg_any
    else:
        bg_fg = n_fg - fg_fg
        bg_bg = bg_any - bg_fg
        mean_pred = fg_any / n
        mean_gt = n_fg / n
        total = 0
        for part, a, b in (
            (fg_fg, 1 - mean_pred, 1 - mean_gt),
            (fg_bg, 1 - mean_pred, 0 - mean_gt),
            (bg_fg, 0 - mean_pred, 1 - mean_gt),
            (bg_bg, 0 - mean_pred, 0 - mean_gt),
        ):
            align = 2 * (a * b) / (a**2 + b**2 + EPS)
            total = total + (align + 1) ** 2 / 4 * part
    return total / (n - 1 + EPS)


def _gauss_1d(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    # fspecial('gaussian', size, sigma) is the outer product of this normalised 1-D kernel
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


_GAUSS = _gauss_1d()
_GAUSS_RADIUS = len(_GAUSS) // 2


def _weighted_fmeasure(codes: np.ndarray, lut: np.ndarray, gt: np.ndarray, n_fg: int, beta: float = 1.0) -> float:
    """Weighted F-beta (Margolin et al. 2014, Eq. 8 with the MATLAB code's details)."""
    if n_fg == 0:
        return 0.0
    h, w = gt.shape
    r = _GAUSS_RADIUS
    fg_rows = np.flatnonzero(gt.any(axis=1))
    fg_cols = np.flatnonzero(gt.any(axis=0))
    # Only the foreground, background pixels whose prediction is not 0 and a
    # band around the foreground (for the 7x7 filter) can change the score.
    zero_levels = np.flatnonzero(lut[: int(codes.max()) + 1] == 0)
    if len(zero_levels) == 1:
        active = gt | (codes != zero_levels[0])
        rows = np.flatnonzero(active.any(axis=1))
        cols = np.flatnonzero(active.any(axis=0))
        r0 = max(0, min(rows[0], fg_rows[0] - r))
        r1 = min(h, max(rows[-1], fg_rows[-1] + r) + 1)
        c0 = max(0, min(cols[0], fg_cols[0] - r))
        c1 = min(w, max(cols[-1], fg_cols[-1] + r) + 1)
    else:
        r0, r1, c0, c1 = 0, h, 0, w
    gt = gt[r0:r1, c0:c1]
    codes = codes[r0:r1, c0:c1]
    hc, wc = gt.shape
    k = len(lut)
    # E = |pred - gt| through a per-level table: background |p|, foreground |p - 1|
    joint = codes.astype(np.intp)
    joint += gt.view(np.uint8) * np.intp(k)
    err = np.concatenate([np.abs(lut), np.abs(lut - 1)])[joint]
    feat = ndimage.distance_transform_edt(~gt, return_distances=False, return_indices=True)

    # pixel dependency: a background pixel takes the error of its nearest
    # foreground pixel; the filtered error is only used on the foreground
    s0, s1 = max(0, fg_rows[0] - r0 - r), min(hc, fg_rows[-1] - r0 + r + 1)
    t0, t1 = max(0, fg_cols[0] - c0 - r), min(wc, fg_cols[-1] - c0 + r + 1)
    nearest = feat[0, s0:s1, t0:t1] * wc + feat[1, s0:s1, t0:t1]
    err_t = err.ravel().take(nearest)
    err_a = ndimage.correlate1d(err_t, _GAUSS, axis=0, mode="constant", cval=0.0)
    err_a = ndimage.correlate1d(err_a, _GAUSS, axis=1, mode="constant", cval=0.0)
    fg_s = gt[s0:s1, t0:t1]
    ew_fg = np.minimum(err_a[fg_s], err[s0:s1, t0:t1][fg_s])

    # importance: a background error weighs more the farther it is from the object
    flat = np.flatnonzero(~gt & (err > 0))
    ys, xs = np.divmod(flat, wc)
    dy = (feat[0].ravel().take(flat) - ys).astype(np.float64)
    dx = (feat[1].ravel().take(flat) - xs).astype(np.float64)
    dist = np.sqrt(dy * dy + dx * dx)  # as scipy computes the distances, bit for bit
    fp_w = _dot(err.ravel().take(flat), 2 - np.exp(np.log(0.5) / 5 * dist))

    tp_w = n_fg - ew_fg.sum()
    recall = 1 - ew_fg.mean()
    precision = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))


def sod_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    binary: bool = False,
    alpha: float = 0.5,
    return_curves: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """All PraNet/SOD scores of one prediction.

    Args:
        pred: ``uint8`` map (0..255), ``bool`` mask or float map in [0, 1], shape (H, W).
        gt: boolean ground truth of the same shape.
        binary: treat ``pred`` as a hard mask (see the module docstring).
        alpha: S-measure balance between object and region terms.
        return_curves: also return the 256-point curves ``em``, ``dice``, ``iou``
            (index t = threshold ``t/255``), needed for data-set ``maxEm``/``maxDice``.

    Returns:
        ``{meanDice, meanIoU, Sm, wFm, meanEm, maxEm, adpEm, maxDice, MAE}`` (and the curves).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if gt.dtype != np.bool_:
        raise ValueError(f"ground truth must be boolean, got {gt.dtype}")
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must be equal 2-D shapes")
    if binary:
        pred = (pred > 127) if pred.dtype == np.uint8 else (pred > 0.5)
    codes, levels = _levels(pred)
    k = len(levels)
    h, w = gt.shape
    n = h * w
    gt_u8 = gt.view(np.uint8)
    n_fg = int(np.count_nonzero(gt))

    # centroid of the foreground splits the image for the region term
    if n_fg:
        rows = np.count_nonzero(gt, axis=1)
        cols = np.count_nonzero(gt, axis=0)
        cy = int(np.round(_dot(np.arange(h), rows) / n_fg)) + 1
        cx = int(np.round(_dot(np.arange(w), cols) / n_fg)) + 1
    else:
        cy, cx = round(h / 2) + 1, round(w / 2) + 1
    cy, cx = min(cy, h), min(cx, w)
    quads = []
    for rs, cs in ((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)),
                   (slice(cy, h), slice(0, cx)), (slice(cy, h), slice(cx, w))):  # fmt: skip
        joint = codes[rs, cs].astype(np.intp)
        joint += gt_u8[rs, cs] * np.intp(k)
        quads.append(np.bincount(joint.ravel(), minlength=2 * k).reshape(2, k))
    hist = quads[0] + quads[1] + quads[2] + quads[3]  # hist[gt][level]

    present = np.flatnonzero(hist[0] + hist[1])
    lo, hi = levels[present[0]], levels[present[-1]]
    lut = (levels - lo) / (hi - lo) if hi != lo else levels.copy()

    counts = hist[0] + hist[1]
    mean_pred = _dot(counts, lut) / n
    mae = (_dot(hist[0], lut) + _dot(hist[1], np.abs(lut - 1))) / n

    # S-measure
    y = n_fg / n
    if y == 0:
        sm = 1 - mean_pred
    elif y == 1:
        sm = mean_pred
    else:
        obj = _s_object(hist[1], lut) * y + _s_object(hist[0], 1 - lut) * (1 - y)
        weights = (cx * cy / n, cy * (w - cx) / n, (h - cy) * cx / n)
        weights = (*weights, 1 - sum(weights))
        region = sum(_ssim_from_hist(q, lut) * wq for q, wq in zip(quads, weights, strict=True))
        sm = max(0.0, obj * alpha + region * (1 - alpha))

    # threshold curves on the 8-bit quantised map: counts of pixels >= t, t = 0..255
    q = (lut * 255).astype(np.uint8)
    fg_ge = np.cumsum(np.bincount(q, weights=hist[1], minlength=256)[::-1])[::-1]
    bg_ge = np.cumsum(np.bincount(q, weights=hist[0], minlength=256)[::-1])[::-1]
    em_curve = _em_from_counts(fg_ge, bg_ge, n_fg, n)
    if n_fg == 0 or n_fg == n:
        em_curve = np.asarray(em_curve, dtype=np.float64)
    fn = n_fg - fg_ge
    with np.errstate(divide="ignore", invalid="ignore"):
        den = 2 * fg_ge + fn + bg_ge
        dice_curve = np.where(den > 0, 2 * fg_ge / np.where(den > 0, den, 1), 0.0)
        den = fg_ge + bg_ge + fn
        iou_curve = np.where(den > 0, fg_ge / np.where(den > 0, den, 1), 0.0)

    thr = min(2 * mean_pred, 1.0)
    on = lut >= thr
    adp_em = float(_em_from_counts(float(hist[1][on].sum()), float(hist[0][on].sum()), n_fg, n))

    if binary:
        # a hard mask: every threshold in (0, 1] gives the mask itself
        em_curve = np.full(256, em_curve[255])
        dice_curve = np.full(256, dice_curve[255])
        iou_curve = np.full(256, iou_curve[255])
        adp_em = float(em_curve[0])

    scores = {
        "meanDice": float(dice_curve.mean()),
        "meanIoU": float(iou_curve.mean()),
        "Sm": float(sm),
        "wFm": _weighted_fmeasure(codes, lut, gt, n_fg),
        "meanEm": float(em_curve.mean()),
        "maxEm": float(em_curve.max()),
        "adpEm": adp_em,
        "maxDice": float(dice_curve.max()),
        "MAE": float(mae),
    }
    if return_curves:
        return scores, {"em": em_curve, "dice": dice_curve, "iou": iou_curve}
    return scores


class SODMetrics(StreamingMetric):
    """Streaming PraNet/SOD evaluation: ``update(pred, gt)`` per image, ``aggregate()`` at the end.

    ``aggregate()`` follows the toolbox: ``maxEm``/``maxDice`` are the maxima of
    the data set's mean curves (not the mean of per-image maxima).

    >>> import numpy as np
    >>> m = SODMetrics()
    >>> gt = np.zeros((8, 8), bool); gt[2:6, 2:6] = True
    >>> _ = m.update(gt.astype(np.uint8) * 255, gt)
    >>> round(m.aggregate()["MAE"], 6)
    0.0
    """

    names = SOD_NAMES

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha
        self.curves: list[dict[str, np.ndarray]] = []

    def reset(self) -> None:
        super().reset()
        self.curves.clear()

    def compute(self, pred: np.ndarray, gt: np.ndarray, binary: bool = False) -> dict[str, float]:
        scores, curves = sod_scores(pred, gt, binary=binary, alpha=self.alpha, return_curves=True)
        self._last_curves = curves
        return scores

    def update(self, pred: np.ndarray, gt: np.ndarray, binary: bool = False, id: str | None = None):
        """Score one image; returns its row."""
        row = self.compute(pred, gt, binary=binary)
        self.add_row(row, id=id, curves=self._last_curves)
        return row

    def add_row(self, row, id: str | None = None, curves: dict[str, np.ndarray] | None = None) -> None:
        if curves is None:
            raise ValueError("SODMetrics rows need their curves")
        super().add_row(row, id=id)
        self.curves.append(curves)

    def mean_curves(self) -> dict[str, np.ndarray]:
        """Mean over the images of the E-phi, Dice and IoU curves (index t = threshold t/255)."""
        return {key: np.mean([c[key] for c in self.curves], axis=0) for key in ("em", "dice", "iou")}

    def aggregate(self) -> dict[str, float]:
        out = super().aggregate()
        if self.curves:
            mean = self.mean_curves()
            out["maxEm"] = float(mean["em"].max())
            out["maxDice"] = float(mean["dice"].max())
        return out


def mean_of(rows: Sequence[dict[str, float]], name: str) -> float:
    """Finite mean of one value over rows (helper for tables)."""
    return finite_mean(r[name] for r in rows)[0]
