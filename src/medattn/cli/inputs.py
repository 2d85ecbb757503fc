"""What the image commands (``predict``, ``enhance``) check before they run: that every input
names something with images in it, that every picture has a shape a model can analyse, and that
a failed run leaves no empty ``--out`` folder behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from medattn.errors import MedattnError, MedattnIOError

#: Smallest side, in pixels, of an image worth analysing: below it no lesion can be told apart
#: (the models see at least 64 px; a 1x1 or 8x8 picture is a thumbnail or a broken export).
MIN_SIDE = 16
#: Largest ratio of the long to the short side: endoscopy, dermoscopy and CT images are near
#: square (at most about 2:1 with their black borders); a 3x20000 strip is not an image to segment.
MAX_ASPECT = 10.0


def collect_images(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The image files of ``inputs`` (folders searched recursively), each checked by :func:`check_shape`.

    Raises :class:`MedattnError` naming the input when a folder holds no image (also a folder named
    like an image, ``x.png/``) and :class:`MedattnIOError` naming the file for a refused image.
    """
    from medattn.inference import iter_inputs

    files: list[Path] = []
    for item in inputs:
        found = list(iter_inputs([item]))
        if not found:
            raise MedattnError(f"{item}: a folder with no image files in it (searched recursively); "
                               "give image files or folders that hold them")
        files += found
    for path in files:
        check_shape(path)
    return files


def check_shape(path: Path) -> None:
    """Refuse a picture too small or too elongated to analyse.

    Reads the header only; what Pillow cannot open (DICOM, NIfTI, damaged files, decompression bombs)
    is left to :func:`medattn.io.read_image`, which names the file and the problem.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError):
        return  # the reader refuses it with its own message (and its configurable pixel limit)
    if min(width, height) < MIN_SIDE:
        raise MedattnIOError(path, f"is {width}x{height} pixels: too small to analyse "
                                   f"(at least {MIN_SIDE} pixels a side)")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise MedattnIOError(path, f"is {width}x{height} pixels: a {max(width, height) / min(width, height):.0f}:1 "
                                   f"strip, not an image to analyse (at most {MAX_ASPECT:.0f}:1)")


@contextmanager
def output_folder(out: Path) -> Iterator[Path]:
    """Yield ``out``; if the block fails and ``out`` did not exist before, remove it while still empty."""
    existed = out.exists()
    try:
        yield out
    except BaseException:
        if not existed and out.is_dir() and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise
