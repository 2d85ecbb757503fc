"""TIFF through tifffile: 8/16-bit, integer and float, single page, stacks and RGB.

Layout: ``YX`` -> ``HW``; ``YXS`` (or planar ``SYX``) -> ``HWC``; one further
non-singleton axis (pages, Z, T, ImageJ slices) -> ``ZHW``/``ZHWC``; more is an
unsupported dimensionality. Spacing (mm) comes from medattn's own metadata when
the file was written here, else from ImageJ metadata (unit + resolution), else
from a centimetre ``ResolutionUnit``; inch-based DPI tags are screen settings,
not anatomy, and are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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

_UNIT_TO_MM = {"mm": 1.0, "millimeter": 1.0, "cm": 10.0, "centimeter": 10.0, "um": 1e-3, "micron": 1e-3,
               "µm": 1e-3, "\\u00B5m": 1e-3, "nm": 1e-6, "m": 1e3, "meter": 1e3}


def _reason(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def _spacing_from_tags(tf: Any, n_stack: int) -> tuple[float, ...] | None:
    page = tf.pages.first if hasattr(tf.pages, "first") else tf.pages[0]
    shaped = tf.shaped_metadata[0] if tf.shaped_metadata else None
    if shaped and "spacing" in shaped:
        return tuple(float(s) for s in shaped["spacing"])
    try:
        xres, yres = page.resolution
    except (AttributeError, TypeError, ValueError):
        return None
    if not xres or not yres:
        return None
    ij = tf.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower() if ij else ""
    if unit in _UNIT_TO_MM:
        scale = _UNIT_TO_MM[unit]
    elif int(getattr(page, "resolutionunit", 0)) == 3:  # RESUNIT.CENTIMETER
        scale = 10.0
    else:
        return None
    yx = (scale / float(yres), scale / float(xres))
    if n_stack:
        z = ij.get("spacing") if ij else None
        if z is None:
            return None
        return (float(z) * scale, *yx)
    return yx


@register_reader
class TIFFReader(ImageReader):
    name = "tiff"
    extensions = (".tif", ".tiff")

    def sniff(self, head: bytes) -> bool:
        return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

    def read(self, path: Path, max_pixels: int | None) -> ImageData:
        import tifffile

        try:
            tf = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as exc:
            raise MedattnIOError(path, f"not a valid TIFF file or truncated ({_reason(exc)})") from None
        with tf:
            try:
                series = tf.series[0]
                shape, axes = tuple(series.shape), str(series.axes)
            except Exception as exc:  # tifffile raises many types on corrupt IFDs
                raise MedattnIOError(path, f"corrupt TIFF structure ({_reason(exc)})") from None
            keep = [i for i, (n, a) in enumerate(zip(shape, axes, strict=True)) if n > 1 or a in "YX"]
            kept_axes = "".join(axes[i] for i in keep)
            chan = [a for a in kept_axes if a in "SC" and shape[axes.index(a)] <= 4]
            stack = [a for a in kept_axes if a not in "YX" and a not in chan]
            if "Y" not in kept_axes or "X" not in kept_axes or len(stack) > 1 or len(chan) > 1:
                raise MedattnIOError(
                    path, f"unsupported dimensionality: TIFF series of shape {shape} with axes {axes!r}"
                )
            h, w = shape[axes.index("Y")], shape[axes.index("X")]
            n_planes = shape[axes.index(stack[0])] if stack else 1
            check_pixels(path, (h, w), max_pixels, planes=n_planes)
            try:
                arr = series.asarray()
            except Exception as exc:
                raise MedattnIOError(path, f"TIFF file is truncated or corrupt ({_reason(exc)})") from None
            spacing = _spacing_from_tags(tf, len(stack))
        arr = arr.reshape([shape[i] for i in keep])
        order = [kept_axes.index(a) for a in (*stack, "Y", "X", *chan)]
        arr = np.ascontiguousarray(arr.transpose(order)) if order != sorted(order) else arr
        layout = ("Z" if stack else "") + "HW" + ("C" if chan else "")
        meta = ImageMeta(spacing=spacing, original_dtype=str(arr.dtype), source=str(path), format=self.name,
                         layout=layout, extra={"axes": axes})
        return finalize(path, arr, meta)


@register_writer
class TIFFWriter(ImageWriter):
    """Writes ``HW``/``HWC``/``ZHW``/``ZHWC`` arrays of any numeric dtype; spacing is kept."""

    name = "tiff"
    extensions = (".tif", ".tiff")

    def write(self, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
        import tifffile

        arr = np.asarray(array)
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        layout = meta.layout if meta is not None and len(meta.layout) == arr.ndim else _guess_layout(arr)
        if layout not in ("HW", "HWC", "ZHW", "ZHWC"):
            raise MedattnIOError(path, f"TIFF writer: unsupported array shape {tuple(arr.shape)}")
        colour = layout.endswith("C") and arr.shape[-1] in (3, 4)
        metadata: dict[str, Any] = {"axes": layout.replace("H", "Y").replace("W", "X").replace("C", "S")}
        kwargs: dict[str, Any] = {}
        if meta is not None and meta.spacing is not None:
            metadata["spacing"] = [float(s) for s in meta.spacing]
            dy, dx = meta.spacing[-2], meta.spacing[-1]
            kwargs.update(resolution=(10.0 / dx, 10.0 / dy), resolutionunit="CENTIMETER")
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, arr, photometric="rgb" if colour else "minisblack",
                             metadata=metadata, **kwargs)


def _guess_layout(arr: np.ndarray) -> str:
    if arr.ndim == 2:
        return "HW"
    if arr.ndim == 3:
        return "HWC" if arr.shape[-1] in (3, 4) else "ZHW"
    if arr.ndim == 4 and arr.shape[-1] in (3, 4):
        return "ZHWC"
    return ""
