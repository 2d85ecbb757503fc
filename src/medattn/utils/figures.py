"""Saving matplotlib figures for the docs: small, atomic PNGs."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from medattn.utils.fileio import atomic_path


def save_figure_png(fig: Any, path: str | os.PathLike[str], dpi: int = 80, palette: bool = True) -> Path:
    """Write ``fig`` to ``path`` atomically and close it.

    ``palette`` quantises to 256 colours, which keeps committed pictures at about a
    third of their RGB size.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    image = Image.open(buf).convert("RGB")
    if palette:
        image = image.quantize(256, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return path
