"""Small image helpers shared by the enhancement modules (resizing, gray/RGB views, progress bars)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
from PIL import Image

T = TypeVar("T")


def resize(array: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize an (H, W) / (H, W, 3) uint8 or bool array to ``size`` = (H, W) (antialiased bilinear)."""
    h, w = size
    if array.dtype == bool:
        img = Image.fromarray(array.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
        return np.asarray(img) > 127
    method = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize((w, h), method))


def gray_of(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luminance of a gray or RGB uint8 image (OpenCV's weights, as medattn.io)."""
    from medattn.io import rgb_to_gray

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return a.astype(np.uint8) if a.dtype == np.uint8 else _to_u8(a)
    return rgb_to_gray(a if a.dtype == np.uint8 else _to_u8(a))


#: Largest difference between colour channels (uint8 levels) for which an RGB image still counts as gray
#: (absorbs rounding in converters; a real colour image differs by tens of levels).
GRAY_TOLERANCE = 2


def is_grayscale(image: np.ndarray, tolerance: int = GRAY_TOLERANCE) -> bool:
    """Whether a uint8 image is grayscale: one channel, or RGB(A) whose R, G and B differ by at most
    ``tolerance`` levels at every pixel (alpha ignored)."""
    a = np.asarray(image)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1):
        return True
    rgb = a[..., :3]
    return bool((rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).max() <= tolerance)


def _to_u8(a: np.ndarray) -> np.ndarray:
    from medattn.inference.render import to_rgb8

    rgb = to_rgb8(a)
    return rgb if a.ndim == 3 else rgb[..., 0]


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (nothing when ``enabled`` is false)."""
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        yield from bar.track(items, total=total, description=description)
