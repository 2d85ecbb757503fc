"""Gray, mask and RGB views of any readable image, matching the PraNet toolbox's OpenCV reads.

The PraNet evaluation toolbox reads maps with ``cv2.imread(path, IMREAD_GRAYSCALE)``;
:func:`read_gray` reproduces that bit for bit (checked against OpenCV in the tests):

* JPEG: libjpeg decodes straight to its stored luminance (Y) channel;
* colour PNG: libpng's ``rgb_to_gray`` with the 0.299/0.587 weights in 15-bit fixed
  point, ``(9797 R + 19234 G + 3737 B) >> 15`` (truncated), gray pixels unchanged;
* other colour images: OpenCV's ``cvtColor`` weights 0.299/0.587/0.114 in 14-bit
  fixed point, rounded: ``(4899 R + 9617 G + 1868 B + 8192) >> 14``.

Non-8-bit values are brought to 0..255 by :func:`to_uint8`: bool -> 0/255; uint16 ->
high byte (``v >> 8``, what OpenCV does with 16-bit PNG/TIFF), except DICOM with
fewer bits stored, which is scaled by its ``2**BitsStored - 1`` range; floats in
[0, 1] (probability maps) -> ``round(255 v)``; any other range (HU, signed ints)
-> min-max stretched to 0..255. MONOCHROME1 DICOM is inverted so bright = dense.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medattn.errors import MedattnIOError
from medattn.io.base import DEFAULT_MAX_PIXELS, ImageData
from medattn.io.core import open_reader, read_image

MASK_THRESHOLD = 127
"""A mask pixel is foreground when its gray value is strictly greater than this."""


def to_uint8(array: np.ndarray, *, full_range: float | None = None) -> np.ndarray:
    """Scale any numeric array to uint8 by the rules in the module docstring.

    ``full_range`` forces ``v / full_range * 255`` (clipped), e.g. ``4095`` for 12-bit data.
    """
    arr = np.asarray(array)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if full_range is not None and full_range > 0:
        scaled = arr.astype(np.float32) * np.float32(255.0 / full_range)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo, hi = float(arr.min()), float(arr.max())
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return np.rint(arr * np.float32(255.0)).astype(np.uint8)
    if hi == lo:
        return np.zeros(arr.shape, np.uint8)
    scaled = (arr.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def rgb_to_gray(rgb: np.ndarray, rule: str = "opencv") -> np.ndarray:
    """Luminance of a uint8 ``(H, W, 3|4)`` RGB(A) array (alpha ignored).

    ``rule="opencv"``: cvtColor's rounded 14-bit weights; ``rule="libpng"``: libpng's
    truncated 15-bit weights with gray pixels kept (what cv2 does for PNG files).
    """
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"expected an (H, W, 3|4) array, got {rgb.shape}")
    r = rgb[..., 0].astype(np.uint32)
    g = rgb[..., 1].astype(np.uint32)
    b = rgb[..., 2].astype(np.uint32)
    if rule == "libpng":
        y = (r * 9797 + g * 19234 + b * 3737) >> 15
        gray_px = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 0] == rgb[..., 2])
        return np.where(gray_px, rgb[..., 0], y.astype(np.uint8))
    if rule == "opencv":
        return ((r * 4899 + g * 9617 + b * 1868 + 8192) >> 14).astype(np.uint8)
    raise ValueError(f"unknown luminance rule {rule!r} (use 'opencv' or 'libpng')")


def rgb_plus_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 4)``: the RGB channels and their luminance (:func:`rgb_to_gray`) as a fourth.

    HLF-Net's skin-lesion input ("besides the original RGB channels, we added an additional
    grayscale channel"); training (``data.in_channels: 4``) and inference build it the same way.
    """
    rgb = np.asarray(rgb)[..., :3]
    return np.concatenate([rgb, rgb_to_gray(rgb)[..., None]], axis=2)


def _plane(data: ImageData, what: str) -> np.ndarray:
    """The single 2-D plane of ``data`` (a one-slice volume is squeezed)."""
    arr = data.array
    if data.meta.layout.startswith("Z"):
        if arr.shape[0] != 1:
            raise MedattnIOError(
                data.meta.source, f"{what} expects a 2-D image; got a volume of {arr.shape[0]} slices"
            )
        arr = arr[0]
    return arr


def _dicom_full_range(data: ImageData) -> float | None:
    ds = data.meta.dicom
    if ds is None or data.array.dtype != np.uint16 or data.meta.extra.get("rescaled"):
        return None
    bits = int(getattr(ds, "BitsStored", 16) or 16)
    return float(2**bits - 1) if bits < 16 else None


def gray_of(data: ImageData) -> np.ndarray:
    """uint8 luminance ``(H, W)`` of an already-read image, by the rules of :func:`read_gray`."""
    arr = _plane(data, "read_gray")
    if arr.ndim == 3:
        if arr.shape[-1] in (1, 2):  # gray (+ alpha)
            arr = arr[..., 0]
        else:
            rule = "libpng" if data.meta.format == "png" else "opencv"
            return rgb_to_gray(to_uint8(arr), rule)
    gray = to_uint8(arr, full_range=_dicom_full_range(data))
    if data.meta.extra.get("photometric") == "MONOCHROME1":
        gray = np.uint8(255) - gray
    return gray


def read_gray(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read any image as uint8 ``(H, W)`` luminance, as ``cv2.imread(path, IMREAD_GRAYSCALE)`` does.

    >>> import numpy as np, tempfile, os
    >>> from medattn.io import write_image
    >>> p = os.path.join(tempfile.mkdtemp(), "g.png")
    >>> write_image(p, np.full((2, 2, 3), (255, 0, 0), np.uint8))
    >>> int(read_gray(p)[0, 0])
    76
    """
    path = Path(path)
    if not path.is_dir():
        reader, limit = open_reader(path, max_pixels)
        fast = getattr(reader, "read_luminance", None)
        if fast is not None:
            gray = fast(path, limit)
            if gray is not None:
                return gray
    return gray_of(read_image(path, max_pixels=max_pixels))


def read_mask(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a binary mask as bool ``(H, W)``: foreground where the gray value is > 127.

    The threshold handles JPEG masks (Kvasir-SEG) and anti-aliased RGB masks
    (CVC-ClinicDB) the way the PraNet toolbox does. Bool and 0/1 label images
    are not special-cased on purpose: save masks as 0/255 (``write_image`` does
    that for bool arrays).
    """
    gray = read_gray(path, max_pixels=max_pixels)
    return gray > MASK_THRESHOLD


def rgb_of(data: ImageData) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB of an already-read image (gray replicated, alpha dropped)."""
    arr = _plane(data, "read_rgb")
    if arr.ndim == 3:
        if arr.shape[-1] in (1, 2):
            arr = arr[..., 0]
        else:
            return np.ascontiguousarray(to_uint8(arr[..., :3]))
    gray = gray_of(ImageData(arr, data.meta))
    return np.repeat(gray[..., None], 3, axis=-1)


def read_rgb(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read any image as uint8 ``(H, W, 3)`` RGB: gray replicated, alpha dropped, 16-bit scaled."""
    return rgb_of(read_image(path, max_pixels=max_pixels))
