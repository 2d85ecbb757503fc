"""Image fusion for lesion detection (seed paper 002, sec. 3.3, eq. 7).

    I_en = alpha * I_in + (1 - alpha) * L_CAWE (.) I_in

``I_in`` is the grayscale or the colorized image, ``L_CAWE`` the attention map
in [0, 1] at the image size; ``alpha = 0.5`` by default (the paper's choice).
Regions the classifier finds lesion-like keep their brightness, the rest is
dimmed towards ``alpha * I_in``.
"""

from __future__ import annotations

import numpy as np

from medattn.errors import ConfigError


def fuse(image: np.ndarray, attention: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Eq. 7 on an (H, W) or (H, W, C) image; uint8 in -> uint8 out (rounded), float in -> float32 out.

    ``attention`` is (H, W) in [0, 1] (values outside are clipped).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    img = np.asarray(image)
    att = np.clip(np.asarray(attention, dtype=np.float32), 0.0, 1.0)
    if att.shape != img.shape[:2]:
        raise ConfigError(f"attention map {att.shape} does not match the image size {img.shape[:2]}")
    weight = alpha + (1.0 - alpha) * att  # eq. 7 factored: I * (alpha + (1 - alpha) L)
    if img.ndim == 3:
        weight = weight[..., None]
    out = img.astype(np.float32) * weight
    if img.dtype == np.uint8:
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return out.astype(np.float32)
