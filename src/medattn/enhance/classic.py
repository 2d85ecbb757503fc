"""Classical contrast enhancement: the FROC table's baseline arms (seed paper 002, Table 1).

The paper compares CAWE with two published enhancement methods, AFDA and MedGA, whose code we
do not have. These three standard methods stand in for them in
``benchmarks/enhance_froc.py`` (arms ``clahe``, ``unsharp``, ``histeq``), named as stand-ins,
not as AFDA or MedGA:

* :func:`clahe` - contrast-limited adaptive histogram equalisation (scikit-image
  ``equalize_adapthist``, 8 x 8 tiles, clip limit 0.01);
* :func:`unsharp_mask` - ``I + amount (I - G_sigma * I)``, clipped (scikit-image ``unsharp_mask``);
* :func:`equalize_histogram` - global histogram equalisation (scikit-image ``equalize_hist``).

Each maps a gray uint8 (H, W) image to a gray uint8 (H, W) image.

>>> import numpy as np
>>> img = (np.arange(64, dtype=np.uint8).reshape(8, 8) // 4 + 100).astype(np.uint8)
>>> int(equalize_histogram(img).max()) > int(img.max())
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medattn.errors import ConfigError


def _check_gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ConfigError(f"classic enhancement: expected a gray uint8 (H, W) image, got {a.dtype} {a.shape}")
    return a


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def clahe(image: np.ndarray, tiles: int = 8, clip_limit: float = 0.01) -> np.ndarray:
    """CLAHE on ``tiles`` x ``tiles`` regions (kernel = side / tiles), clip limit as scikit-image's."""
    from skimage.exposure import equalize_adapthist

    a = _check_gray(image)
    kernel = (max(1, a.shape[0] // tiles), max(1, a.shape[1] // tiles))
    return _to_uint8(equalize_adapthist(a, kernel_size=kernel, clip_limit=clip_limit))


def unsharp_mask(image: np.ndarray, radius: float = 2.0, amount: float = 1.0) -> np.ndarray:
    """Unsharp masking ``I + amount (I - G_radius * I)`` on [0, 1], clipped."""
    from skimage.filters import unsharp_mask as _unsharp

    a = _check_gray(image)
    return _to_uint8(_unsharp(a.astype(np.float64) / 255.0, radius=radius, amount=amount, preserve_range=True))


def equalize_histogram(image: np.ndarray, bins: int = 256) -> np.ndarray:
    """Global histogram equalisation (the cumulative histogram as the intensity map)."""
    from skimage.exposure import equalize_hist

    return _to_uint8(equalize_hist(_check_gray(image), nbins=bins))


#: arm name -> enhancer, for ``medattn.enhance.detection.make_arms``
CLASSIC_ENHANCERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clahe": clahe,
    "unsharp": unsharp_mask,
    "histeq": equalize_histogram,
}
