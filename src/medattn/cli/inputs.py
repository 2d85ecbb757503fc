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

from medattn.errors import MedattnError
from medattn.io.shape import MAX_ASPECT, MIN_SIDE, check_shape  # noqa: F401  (re-exported)


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
