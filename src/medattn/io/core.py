"""``read_image`` and ``write_image``: the two entry points over the reader/writer registry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medattn.errors import MedattnIOError
from medattn.io.base import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    ImageMeta,
    ImageReader,
    check_readable_file,
    pick_reader,
    reader_by_name,
    resolve_max_pixels,
    writer_for,
)


def open_reader(
    path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, reader: str | None = None
) -> tuple[ImageReader, int | None]:
    """Check ``path`` is a readable non-empty file; return its reader and the effective pixel limit."""
    head = check_readable_file(path)
    chosen = reader_by_name(reader) if reader else pick_reader(path, head)
    return chosen, resolve_max_pixels(max_pixels)


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    reader: str | None = None,
    progress: bool = False,
) -> ImageData:
    """Read an image, volume or DICOM series folder into :class:`ImageData`.

    The reader is picked by file ending and confirmed by the content's magic
    bytes (a PNG named ``.jpg`` is read as PNG); ``reader="png"`` etc. forces one.
    ``max_pixels`` limits one plane (H x W) before decoding, and volumes to 10x
    that; ``None`` disables the check; the ``MEDATTN_MAX_PIXELS`` environment
    variable replaces the default. Any problem raises :class:`MedattnIOError`
    naming the file. ``progress`` shows a progress bar while a series folder is decoded.

    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> write_image(p, np.zeros((4, 5), np.uint8))
    >>> img = read_image(p)
    >>> img.array.shape, img.meta.format, img.meta.layout
    ((4, 5), 'png', 'HW')
    """
    path = Path(path)
    if path.is_dir():
        from medattn.io.dicom import read_dicom_series

        return read_dicom_series(path, max_pixels=max_pixels, progress=progress)
    chosen, limit = open_reader(path, max_pixels, reader)
    try:
        return chosen.read(path, limit)
    except MemoryError:
        raise MedattnIOError(path, "not enough memory to decode this image") from None


def write_image(path: str | os.PathLike[str], array: np.ndarray, meta: ImageMeta | None = None) -> None:
    """Write ``array`` atomically, in the format given by the file ending.

    PNG (uint8, uint16 gray, bool as 0/255), JPEG and BMP (uint8), TIFF (any
    numeric dtype, stacks), NIfTI ``.nii``/``.nii.gz`` (affine or spacing kept
    from ``meta``), ``.npy`` and DICOM ``.dcm`` (a derived slice of ``meta.dicom``
    when given, else a Secondary Capture).
    """
    path = Path(path)
    writer = writer_for(path)
    arr = np.asarray(array)
    if arr.size == 0:
        raise MedattnIOError(path, f"cannot write an empty array of shape {tuple(arr.shape)}")
    try:
        writer.write(path, arr, meta)
    except PermissionError:
        raise MedattnIOError(path, "permission denied") from None
    except OSError as exc:
        raise MedattnIOError(path, f"cannot write: {exc.strerror or exc}") from None
