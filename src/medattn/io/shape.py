"""Whether a 2D picture has a shape worth analysing.

Shared by the image commands (``medattn predict`` / ``enhance``) and the application's upload
check, so a 1x1 thumbnail or a 3x20000 strip is refused the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path

from medattn.errors import MedattnIOError

#: Smallest side, in pixels, of an image worth analysing: below it no lesion can be told apart
#: (the models see at least 64 px; a 1x1 or 8x8 picture is a thumbnail or a broken export).
MIN_SIDE = 16
#: Largest ratio of the long to the short side: endoscopy, dermoscopy and CT images are near
#: square (at most about 2:1 with their black borders); a 3x20000 strip is not an image to segment.
MAX_ASPECT = 10.0


def check_picture_size(path: Path, width: int, height: int) -> None:
    """Raise :class:`MedattnIOError` naming ``path`` when a ``width`` x ``height`` picture is too small
    (under :data:`MIN_SIDE` a side) or too elongated (over :data:`MAX_ASPECT`:1)."""
    if min(width, height) < MIN_SIDE:
        raise MedattnIOError(path, f"is {width}x{height} pixels: too small to analyse "
                                   f"(at least {MIN_SIDE} pixels a side)")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise MedattnIOError(path, f"is {width}x{height} pixels: a {max(width, height) / min(width, height):.0f}:1 "
                                   f"strip, not an image to analyse (at most {MAX_ASPECT:.0f}:1)")


def check_shape(path: Path) -> None:
    """Refuse a picture too small or too elongated to analyse, from its header.

    What Pillow cannot open (DICOM, NIfTI, damaged files, decompression bombs) is left to
    :func:`medattn.io.read_image`, which names the file and the problem.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError):
        return  # the reader refuses it with its own message (and its configurable pixel limit)
    check_picture_size(path, width, height)
