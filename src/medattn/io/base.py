"""The reader/writer contract and the registry that picks a reader for a file.

Modelled on nnU-Net's ``imageio``: one abstract :class:`ImageReader` and
:class:`ImageWriter` with a strict contract, and a registry. A reader is chosen
by the file ending first; the ending is then checked against the file's magic
bytes, and when the content says otherwise (a PNG saved as ``.jpg``) the reader
that recognises the content wins. Content that no reader recognises is an error.

Contract of every reader (checked by :func:`finalize` so no reader can forget):

* ``array`` is a NumPy array laid out as ``meta.layout`` says: ``"HW"`` (gray),
  ``"HWC"`` (colour, C = 2..4, channels in RGB(A) order), ``"ZHW"`` (a volume,
  multi-frame file or series) or ``"ZHWC"`` (multi-frame colour DICOM/TIFF);
* ``meta.spacing`` has one entry per spatial axis, in array-axis order, in mm
  (``(dy, dx)`` or ``(dz, dy, dx)``), or is ``None`` when the file has none;
* float arrays hold no NaN or Inf;
* the pixel count of one plane (H x W) is at most ``max_pixels``, and a volume
  holds at most ``VOLUME_FACTOR x max_pixels`` voxels, checked from the header
  before any pixel is decoded.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import MedattnIOError

DEFAULT_MAX_PIXELS = 100_000_000
"""Default limit on the pixels of one 2-D plane (100 MP), as a decompression-bomb guard."""

VOLUME_FACTOR = 10
"""A 3-D image may hold up to ``VOLUME_FACTOR * max_pixels`` voxels (1 G voxels by default)."""

MAX_PIXELS_ENV = "MEDATTN_MAX_PIXELS"
"""Environment variable that replaces the default pixel limit (``0`` or ``none``: no limit)."""

SNIFF_BYTES = 1024

LAYOUTS = ("HW", "HWC", "ZHW", "ZHWC")


@dataclass
class ImageMeta:
    """What a reader knows about an image besides its pixels.

    Attributes:
        spacing: pixel/voxel size in mm per spatial axis, in array-axis order, or ``None``.
        modality: DICOM modality (``"CT"``, ``"MR"``, ``"CR"``, ``"OT"`` ...) or ``None``.
        original_dtype: dtype of the values as stored in the file (before HU rescaling).
        source: path the image was read from (``""`` for an in-memory image).
        format: name of the reader/writer format (``"png"``, ``"dicom"``, ``"nifti"`` ...).
        layout: ``"HW"``, ``"HWC"``, ``"ZHW"`` or ``"ZHWC"``: how to read ``array``'s axes.
        affine: 4x4 voxel-to-world matrix of a NIfTI file (indexes ``(x, y, z)`` = array
            ``[z, y, x]``), else ``None``.
        dicom: pydicom header (pixel data removed) of the first slice, DICOM only.
        extra: format-specific details (photometric interpretation, per-slice headers ...).
    """

    spacing: tuple[float, ...] | None = None
    modality: str | None = None
    original_dtype: str = ""
    source: str = ""
    format: str = ""
    layout: str = "HW"
    affine: np.ndarray | None = None
    dicom: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageData:
    """An image's pixels and metadata, as returned by :func:`medattn.io.read_image`."""

    array: np.ndarray
    meta: ImageMeta

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def is_volume(self) -> bool:
        """True for ``ZHW``/``ZHWC`` data (volumes, multi-frame files, series)."""
        return self.meta.layout.startswith("Z")


class ImageReader(ABC):
    """Reads one file format into :class:`ImageData`.

    Subclasses set ``name`` and ``extensions`` (lower case, with the dot; compound
    endings such as ``.nii.gz`` allowed), implement :meth:`sniff` on the first
    :data:`SNIFF_BYTES` bytes and :meth:`read`. ``read`` must raise
    :class:`MedattnIOError` for any problem with the file and pass its result
    through :func:`finalize`.
    """

    name: str = ""
    extensions: tuple[str, ...] = ()
    # A weak sniffer (DICOM without preamble) is only trusted when the ending agrees.
    weak_sniff: bool = False

    @abstractmethod
    def sniff(self, head: bytes) -> bool:
        """Return True when ``head`` (the first bytes of a file) looks like this format."""

    @abstractmethod
    def read(self, path: Path, max_pixels: int | None) -> ImageData:
        """Read ``path``; raise :class:`MedattnIOError` naming the problem on bad input."""


class ImageWriter(ABC):
    """Writes :class:`ImageData` arrays in one format, atomically."""

    name: str = ""
    extensions: tuple[str, ...] = ()

    @abstractmethod
    def write(self, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
        """Write ``array`` to ``path`` (through :func:`medattn.utils.fileio.atomic_path`)."""


_READERS: list[ImageReader] = []
_WRITERS: list[ImageWriter] = []


def register_reader(cls: type[ImageReader]) -> type[ImageReader]:
    """Class decorator adding a reader to the registry (later registrations are tried last)."""
    _READERS.append(cls())
    return cls


def register_writer(cls: type[ImageWriter]) -> type[ImageWriter]:
    """Class decorator adding a writer to the registry."""
    _WRITERS.append(cls())
    return cls


def list_readers() -> list[str]:
    """Names of the registered readers, in the order they are tried."""
    return [r.name for r in _READERS]


def _ending(path: Path) -> str:
    return path.name.lower()


def _matches_ending(obj: ImageReader | ImageWriter, path: Path) -> bool:
    name = _ending(path)
    return any(name.endswith(ext) for ext in obj.extensions)


def reader_by_name(name: str) -> ImageReader:
    for r in _READERS:
        if r.name == name:
            return r
    raise MedattnIOError(None, f"unknown reader {name!r}; known: {', '.join(list_readers())}")


def writer_for(path: Path) -> ImageWriter:
    """The writer whose extensions match ``path``'s ending."""
    # longest matching extension first so ".nii.gz" beats ".gz"-like endings
    best: tuple[int, ImageWriter] | None = None
    for w in _WRITERS:
        for ext in w.extensions:
            if _ending(path).endswith(ext) and (best is None or len(ext) > best[0]):
                best = (len(ext), w)
    if best is None:
        known = sorted({e for w in _WRITERS for e in w.extensions})
        raise MedattnIOError(path, f"cannot write this file type; known endings: {', '.join(known)}")
    return best[1]


def check_readable_file(path: Path) -> bytes:
    """Return the first bytes of ``path``, or raise a clear error for a missing/empty/locked file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MedattnIOError(path, "no such file or directory") from None
    except PermissionError:
        raise MedattnIOError(path, "permission denied") from None
    except OSError as exc:
        raise MedattnIOError(path, f"cannot access: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise MedattnIOError(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise MedattnIOError(path, "not a regular file")
    if st.st_size == 0:
        raise MedattnIOError(path, "file is empty")
    try:
        with open(path, "rb") as fh:
            return fh.read(SNIFF_BYTES)
    except PermissionError:
        raise MedattnIOError(path, "permission denied") from None
    except OSError as exc:
        raise MedattnIOError(path, f"cannot read: {exc.strerror or exc}") from None


def sniff_reader(head: bytes, path: Path | None = None) -> ImageReader | None:
    """The reader that recognises ``head``; weak sniffers count only if ``path``'s ending agrees."""
    for r in _READERS:
        if r.sniff(head) and (not r.weak_sniff or (path is not None and _matches_ending(r, path))):
            return r
    return None


def pick_reader(path: Path, head: bytes) -> ImageReader:
    """Pick a reader: by file ending, confirmed (or overruled) by the content's magic bytes."""
    by_ending = [r for r in _READERS if _matches_ending(r, path)]
    for r in by_ending:
        if r.sniff(head):
            return r
    sniffed = sniff_reader(head, path)
    if sniffed is not None:
        return sniffed
    # weak sniffers also accept files with no ending at all (DICOM files are often named by UID)
    if "." not in path.name or path.suffix.lower() not in _known_suffixes():
        for r in _READERS:
            if r.weak_sniff and r.sniff(head):
                return r
    if by_ending:
        return _raise_mismatch(path, by_ending[0], head)
    raise MedattnIOError(path, "content matches no supported image format" + _describe_head(head))


def _known_suffixes() -> set[str]:
    return {"." + ext.rsplit(".", 1)[-1] for r in _READERS for ext in r.extensions}


def _raise_mismatch(path: Path, expected: ImageReader, head: bytes) -> ImageReader:
    raise MedattnIOError(
        path,
        f"not a valid {expected.name.upper()} file: content matches no supported image format"
        + _describe_head(head),
    )


def _describe_head(head: bytes) -> str:
    if not head:
        return ""
    sample = head[:64]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if printable == len(sample):
        return " (looks like text)"
    return f" (starts with bytes {head[:8].hex(' ')})"


def resolve_max_pixels(max_pixels: int | None) -> int | None:
    """The effective pixel limit: ``MEDATTN_MAX_PIXELS`` replaces the default value."""
    if max_pixels == DEFAULT_MAX_PIXELS:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if env:
            if env.lower() in ("0", "none", "off", "unlimited"):
                return None
            try:
                value = int(float(env))
            except ValueError:
                raise MedattnIOError(None, f"{MAX_PIXELS_ENV}={env!r} is not a number") from None
            return value if value > 0 else None
    if max_pixels is not None and max_pixels <= 0:
        return None
    return max_pixels


def check_pixels(path: Path | str, shape: tuple[int, ...], max_pixels: int | None, *, planes: int = 1) -> None:
    """Raise if a plane of ``shape`` (H, W) or the whole image exceeds the pixel limit.

    Called with the shape read from the header, before any pixel data is decoded.
    """
    if max_pixels is None:
        return
    h, w = int(shape[0]), int(shape[1])
    if h * w > max_pixels:
        raise MedattnIOError(
            path,
            f"image of {w}x{h} = {h * w:,} pixels exceeds the limit of {max_pixels:,} "
            f"(possible decompression bomb; raise it with max_pixels= or {MAX_PIXELS_ENV})",
        )
    total = h * w * max(int(planes), 1)
    if total > VOLUME_FACTOR * max_pixels:
        raise MedattnIOError(
            path,
            f"volume of {planes} x {w}x{h} = {total:,} voxels exceeds the limit of "
            f"{VOLUME_FACTOR * max_pixels:,} (possible decompression bomb; raise it with max_pixels= "
            f"or {MAX_PIXELS_ENV})",
        )


def check_finite(path: Path | str, array: np.ndarray) -> None:
    """Raise when a float array holds NaN or Inf (they poison every later statistic)."""
    if array.dtype.kind not in "fc":
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        n_nan = int(np.isnan(array).sum())
        raise MedattnIOError(
            path, f"contains {bad:,} non-finite values ({n_nan:,} NaN, {bad - n_nan:,} Inf)"
        )


def layout_for(array: np.ndarray, *, volume: bool = False) -> str:
    """Infer the layout of an array a reader produced (``volume``: 3-D means ZHW)."""
    if array.ndim == 2:
        return "HW"
    if array.ndim == 3:
        return "ZHW" if volume else "HWC"
    if array.ndim == 4:
        return "ZHWC"
    return ""


def finalize(path: Path | str, array: np.ndarray, meta: ImageMeta) -> ImageData:
    """Check the reader contract and return the :class:`ImageData`."""
    if meta.layout not in LAYOUTS or len(meta.layout) != array.ndim:
        raise MedattnIOError(
            path,
            f"unsupported dimensionality: array of shape {tuple(array.shape)} "
            "(supported: 2-D images, colour images, 3-D volumes)",
        )
    if meta.layout.endswith("C") and not 1 <= array.shape[-1] <= 4:
        raise MedattnIOError(path, f"unsupported number of channels: {array.shape[-1]} (1 to 4 supported)")
    check_finite(path, array)
    if meta.spacing is not None:
        n_spatial = array.ndim - (1 if meta.layout.endswith("C") else 0)
        meta.spacing = tuple(float(s) for s in meta.spacing)[:n_spatial]
        if len(meta.spacing) != n_spatial:
            meta.spacing = None
    if not meta.source:
        meta.source = str(path)
    return ImageData(array=array, meta=meta)
