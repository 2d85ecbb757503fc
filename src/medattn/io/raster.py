"""PNG, JPEG, BMP, GIF and WebP through Pillow.

Decoding is a plain Pillow decode followed by one copy into a writable NumPy
array. Mode mapping: ``1`` -> bool, ``L`` -> uint8 ``HW``, ``LA``/``RGB``/``RGBA``
-> uint8 ``HWC``, ``I;16`` -> uint16, ``I`` -> int32, ``F`` -> float32; palette,
CMYK and YCbCr images are converted to RGB(A) as OpenCV does. Only the first
frame of an animated GIF/WebP is read. EXIF orientation is not applied (masks
and images stay pixel-aligned). 16-bit colour PNGs are reduced to 8 bits by Pillow.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medattn.errors import MedattnIOError
from medattn.io.base import (
    ImageData,
    ImageMeta,
    ImageReader,
    ImageWriter,
    check_pixels,
    finalize,
    register_reader,
    register_writer,
)
from medattn.utils.fileio import atomic_path

_PIL_LIMIT_LOCK = threading.Lock()

_TO_RGB = {"P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "La": "LA",
           "RGBa": "RGBA", "RGBX": "RGB"}


def _open(path: Path, pil_format: str, max_pixels: int | None) -> Image.Image:
    """Open (header only) with Pillow's own bomb check replaced by ours."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path, formats=[pil_format])
    except Image.DecompressionBombError:
        if max_pixels is not None and max_pixels <= 2 * (Image.MAX_IMAGE_PIXELS or 0):
            raise MedattnIOError(
                path, f"image exceeds the limit of {max_pixels:,} pixels (possible decompression bomb)"
            ) from None
        # the caller allows more than Pillow does: lift Pillow's limit for this one open
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(path, formats=[pil_format])
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise MedattnIOError(path, f"not a valid {pil_format} file ({_reason(exc)})") from None
    except OSError as exc:
        raise MedattnIOError(path, f"cannot read {pil_format} header: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _load(path: Path, im: Image.Image, what: str) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = _reason(exc)
        if "truncated" in msg or "broken data stream" in msg or isinstance(exc, EOFError):
            raise MedattnIOError(path, f"{what} file is truncated ({msg})") from None
        raise MedattnIOError(path, f"{what} file is corrupt ({msg})") from None


def pil_to_array(im: Image.Image) -> np.ndarray:
    """A writable NumPy array of a loaded Pillow image (one copy)."""
    arr = np.asarray(im)
    return arr if arr.flags.writeable else arr.copy()


class PillowReader(ImageReader):
    """Base of the Pillow-backed readers; subclasses set the format and magic bytes."""

    pil_format = ""
    magic: tuple[bytes, ...] = ()

    def sniff(self, head: bytes) -> bool:
        return any(head.startswith(m) for m in self.magic)

    def _open_checked(self, path: Path, max_pixels: int | None) -> Image.Image:
        im = _open(path, self.pil_format, max_pixels)
        try:
            check_pixels(path, (im.height, im.width), max_pixels)
        except MedattnIOError:
            im.close()
            raise
        return im

    def read(self, path: Path, max_pixels: int | None) -> ImageData:
        im = self._open_checked(path, max_pixels)
        with im:
            _load(path, im, self.name.upper())
            mode = im.mode
            extra: dict[str, object] = {"mode": mode}
            if getattr(im, "n_frames", 1) > 1:
                extra["n_frames"] = im.n_frames
            if "dpi" in im.info:
                extra["dpi"] = tuple(float(d) for d in im.info["dpi"])
            if mode in _TO_RGB:
                target = _TO_RGB[mode]
                if mode == "P" and "transparency" in im.info:
                    target = "RGBA"
                conv = im.convert(target)
            elif mode.startswith("I;16"):
                conv = im  # np.asarray maps I;16 (any byte order) to native uint16
            else:
                conv = im
            arr = pil_to_array(conv)
            original = "uint8" if mode in _TO_RGB or mode in ("L", "LA", "RGB", "RGBA") else str(arr.dtype)
        if mode.startswith("I;16") and arr.dtype != np.uint16:
            arr = arr.astype(np.uint16)
        layout = "HW" if arr.ndim == 2 else "HWC"
        meta = ImageMeta(original_dtype=original, source=str(path), format=self.name, layout=layout, extra=extra)
        return finalize(path, arr, meta)


@register_reader
class PNGReader(PillowReader):
    name = "png"
    pil_format = "PNG"
    extensions = (".png",)
    magic = (b"\x89PNG\r\n\x1a\n",)


@register_reader
class JPEGReader(PillowReader):
    name = "jpeg"
    pil_format = "JPEG"
    extensions = (".jpg", ".jpeg", ".jpe", ".jfif")
    magic = (b"\xff\xd8\xff",)

    def read_luminance(self, path: Path, max_pixels: int | None) -> np.ndarray:
        """Decode straight to luminance (the JPEG's Y channel), as OpenCV's IMREAD_GRAYSCALE does.

        libjpeg outputs the stored Y component when asked for grayscale, so this
        is both faster than an RGB decode and identical to what cv2 returns.
        """
        im = self._open_checked(path, max_pixels)
        with im:
            if im.mode in ("RGB", "YCbCr"):
                im.draft("L", im.size)
            _load(path, im, "JPEG")
            if im.mode != "L":
                return None  # CMYK and other exotic JPEGs: let the caller convert
            return pil_to_array(im)


@register_reader
class BMPReader(PillowReader):
    name = "bmp"
    pil_format = "BMP"
    extensions = (".bmp", ".dib")
    magic = (b"BM",)


@register_reader
class GIFReader(PillowReader):
    name = "gif"
    pil_format = "GIF"
    extensions = (".gif",)
    magic = (b"GIF87a", b"GIF89a")


@register_reader
class WebPReader(PillowReader):
    name = "webp"
    pil_format = "WEBP"
    extensions = (".webp",)

    def sniff(self, head: bytes) -> bool:
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def array_to_pil(path: Path, array: np.ndarray, fmt: str, allow_16bit: bool) -> Image.Image:
    """Convert an array to a Pillow image for ``fmt``, or raise a clear error."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        raise MedattnIOError(
            path, f"{fmt} stores 2-D gray or colour images; got shape {tuple(arr.shape)} (use TIFF, NIfTI or .npy)"
        )
    if arr.dtype == np.uint16 and allow_16bit and arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr))
    if arr.dtype != np.uint8:
        hint = "uint8 or uint16 (gray)" if allow_16bit else "uint8"
        raise MedattnIOError(
            path,
            f"{fmt} stores {hint} pixels; got {arr.dtype} (convert first, e.g. medattn.io.to_uint8(array))",
        )
    if arr.ndim == 3 and arr.shape[-1] == 2 and fmt != "PNG":
        raise MedattnIOError(path, f"{fmt} cannot store gray+alpha images")
    if arr.ndim == 3 and arr.shape[-1] == 4 and fmt in ("JPEG", "BMP"):
        raise MedattnIOError(path, f"{fmt} cannot store an alpha channel; drop it (array[..., :3]) or use PNG")
    return Image.fromarray(np.ascontiguousarray(arr))


class PillowWriter(ImageWriter):
    pil_format = ""
    allow_16bit = False
    save_options: dict[str, object] = {}

    def write(self, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
        im = array_to_pil(path, array, self.pil_format, self.allow_16bit)
        with atomic_path(path) as tmp:
            im.save(tmp, format=self.pil_format, **self.save_options)


@register_writer
class PNGWriter(PillowWriter):
    name = "png"
    pil_format = "PNG"
    extensions = (".png",)
    allow_16bit = True


@register_writer
class JPEGWriter(PillowWriter):
    name = "jpeg"
    pil_format = "JPEG"
    extensions = (".jpg", ".jpeg")
    # 4:4:4 at high quality: results saved for inspection should not smear colour edges
    save_options = {"quality": 95, "subsampling": 0}


@register_writer
class BMPWriter(PillowWriter):
    name = "bmp"
    pil_format = "BMP"
    extensions = (".bmp",)
