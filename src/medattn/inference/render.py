"""Pictures of a prediction: mask overlay, transparent mask layer, attention heat map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MASK_COLOUR = (0, 255, 120)
CONTOUR_COLOUR = (255, 230, 0)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) of any dtype to (H, W, 3) uint8 (min-max scaled unless already uint8)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        f = a.astype(np.float32)
        lo, hi = float(f.min()), float(f.max())
        a = np.zeros(f.shape, np.uint8) if hi <= lo else ((f - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a[..., :3]


def contour(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    return m & ~ndimage.binary_erosion(m, iterations=max(1, round(max(m.shape) / 300)))


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with the mask tinted in and its contour drawn, (H, W, 3) uint8."""
    rgb = to_rgb8(image).astype(np.float32)
    m = mask.astype(bool)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(MASK_COLOUR, np.float32)
    rgb[contour(m)] = CONTOUR_COLOUR
    return rgb.clip(0, 255).astype(np.uint8)


def mask_rgba(mask: np.ndarray) -> np.ndarray:
    """A transparent layer: mask colour where the mask is, contour opaque, (H, W, 4) uint8."""
    m = mask.astype(bool)
    out = np.zeros((*m.shape, 4), np.uint8)
    out[m] = (*MASK_COLOUR, 255)
    out[contour(m)] = (*CONTOUR_COLOUR, 255)
    return out


def heatmap(values: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """Values in [0, 1] through a matplotlib colour map, (H, W, 3) uint8."""
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    idx = np.clip(np.asarray(values, np.float32), 0, 1) * 255
    return lut[(idx + 0.5).astype(np.uint8)]


def heat_overlay(image: np.ndarray, values: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return ((1 - alpha) * to_rgb8(image) + alpha * heatmap(values)).clip(0, 255).astype(np.uint8)
