"""Image-quality metrics for denoising: PSNR, SSIM and RMSE in Hounsfield units.

The intensity range is always explicit: pass ``data_range`` (e.g. 255 for
8-bit images, 1 for [0, 1] images) or a CT window ``(center, width)`` in HU or a preset name (``"soft_tissue"``, ``"lung"``,
``"bone"``, ``"brain"``: :data:`medattn.io.WINDOWS`).
A window clips both images to ``[center - width/2, center + width/2]`` and uses
``width`` as the data range, so a score describes what a reader sees in that
window. Integer images without either use their dtype's range (as
scikit-image does); float images without either are an error.

SSIM is the Gaussian-weighted form of Wang et al. (IEEE TIP 2004): an 11-tap
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population covariance,
the mean taken over the image without the 5-pixel border; identical to
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)``. It works on 2-D images and 3-D
volumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medattn.metrics.base import StreamingMetric

Window = tuple[float, float] | str  # (center, width) in HU, or a preset name of medattn.io.WINDOWS


def _prepare(
    pred: np.ndarray, target: np.ndarray, data_range: float | None, window: Window | None
) -> tuple[np.ndarray, np.ndarray, float]:
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if window is not None:
        if isinstance(window, str):
            from medattn.io.windows import window_bounds  # NumPy only; keeps the presets in one place

            lo, hi = window_bounds(window)
        else:
            center, width = (float(v) for v in window)
            if width <= 0:
                raise ValueError(f"window width must be positive, got {width}")
            lo, hi = center - width / 2, center + width / 2
        width = hi - lo
        return (
            np.clip(pred.astype(np.float64), lo, hi),
            np.clip(target.astype(np.float64), lo, hi),
            width,
        )
    if data_range is None:
        if not np.issubdtype(target.dtype, np.integer):
            raise ValueError("give data_range or window for float images")
        info = np.iinfo(target.dtype)
        data_range = float(info.max - info.min)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    return pred.astype(np.float64), target.astype(np.float64), float(data_range)


def psnr(
    pred: np.ndarray, target: np.ndarray, data_range: float | None = None, window: Window | None = None
) -> float:
    """Peak signal-to-noise ratio 10 log10(R^2 / MSE) in dB; ``inf`` for identical images."""
    p, t, rng = _prepare(pred, target, data_range, window)
    mse = float(np.mean((p - t) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(rng * rng / mse)


def ssim(
    pred: np.ndarray,
    target: np.ndarray,
    data_range: float | None = None,
    window: Window | None = None,
    sigma: float = 1.5,
) -> float:
    """Mean structural similarity (Wang et al. 2004, Eq. 13) with a Gaussian window."""
    p, t, rng = _prepare(pred, target, data_range, window)
    truncate = 3.5
    radius = int(truncate * sigma + 0.5)
    if min(p.shape) < 2 * radius + 1:
        raise ValueError(f"images must be at least {2 * radius + 1} pixels along every axis for SSIM")
    c1 = (0.01 * rng) ** 2
    c2 = (0.03 * rng) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=sigma, truncate=truncate, mode="reflect")

    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p * mu_p
    var_t = blur(t * t) - mu_t * mu_t
    cov = blur(p * t) - mu_p * mu_t
    num = (2 * mu_p * mu_t + c1) * (2 * cov + c2)
    den = (mu_p * mu_p + mu_t * mu_t + c1) * (var_p + var_t + c2)
    inner = tuple(slice(radius, s - radius) for s in p.shape)
    return float((num / den)[inner].mean(dtype=np.float64))


def rmse_hu(pred_hu: np.ndarray, target_hu: np.ndarray, window: Window | None = None) -> float:
    """Root-mean-square error in HU (after clipping both to ``window`` when given)."""
    p, t, _ = _prepare(pred_hu, target_hu, 1.0, window)
    return float(np.sqrt(np.mean((p - t) ** 2)))


class DenoisingMetrics(StreamingMetric):
    """Streaming PSNR / SSIM / RMSE with one fixed data range or HU window.

    >>> import numpy as np
    >>> m = DenoisingMetrics(window=(40, 400))
    >>> x = np.linspace(-200, 300, 32 * 32).reshape(32, 32)
    >>> row = m.update(x + 5, x)
    >>> round(row["rmse"], 6)
    5.0
    """

    names = ("psnr", "ssim", "rmse")

    def __init__(self, data_range: float | None = None, window: Sequence[float] | str | None = None) -> None:
        super().__init__()
        if window is not None and not isinstance(window, str) and len(window) != 2:
            raise ValueError("window is (center, width) or a preset name")
        self.data_range = data_range
        self.window = window if window is None or isinstance(window, str) else (float(window[0]), float(window[1]))

    def compute(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {
            "psnr": psnr(pred, target, self.data_range, self.window),
            "ssim": ssim(pred, target, self.data_range, self.window),
            "rmse": rmse_hu(pred, target, self.window),
        }
