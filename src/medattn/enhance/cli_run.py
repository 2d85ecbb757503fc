"""What ``medattn enhance`` does for a list of inputs (kept here so the CLI module stays import-light)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from medattn.enhance import _load, enhance_image
from medattn.enhance._images import track


class EnhanceCounts(NamedTuple):
    """What :func:`run_enhance` did: images written, how many were colorized, how many colour inputs were
    fused in their own colours."""

    written: int
    colorized: int
    kept_colour: int


def run_enhance(inputs: Sequence[str | os.PathLike[str]], model: str, out: str | os.PathLike[str],
                colorizer: str | None = None, alpha: float = 0.5, size: int | None = None,
                progress: bool = True, colorize: str = "auto") -> EnhanceCounts:
    """Enhance every input image (``colorize``: see :func:`medattn.enhance.enhance_image`); ``<name>_colorized.png``
    is written only for the images that were colorized."""
    from medattn.inference import display_image, iter_inputs
    from medattn.inference.render import heat_overlay, heatmap
    from medattn.io import read_image, write_image

    files = list(iter_inputs(inputs))
    classifier = _load(model)
    gen = _load(colorizer) if colorizer else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    count = colorized = kept_colour = 0
    for path in track(files, "enhancing", len(files), progress):
        image = display_image(read_image(path))
        res = enhance_image(image, _Loaded(*classifier), _Loaded(*gen) if gen else None, alpha=alpha, size=size,
                            colorize=colorize)
        write_image(out / f"{path.stem}_heatmap.png", heatmap(res["heatmap"]))
        write_image(out / f"{path.stem}_heatmap_overlay.png", heat_overlay(image, res["heatmap"]))
        if res["colorized"] is not None:
            write_image(out / f"{path.stem}_colorized.png", res["colorized"])
            colorized += 1
        elif not res["grayscale"]:
            kept_colour += 1
        write_image(out / f"{path.stem}_fused.png", res["fused"])
        count += 1
    return EnhanceCounts(count, colorized, kept_colour)


class _Loaded:
    """A loaded (module, card) pair in the shape :func:`medattn.enhance._load` accepts."""

    def __init__(self, model: object, card: dict) -> None:
        self.model, self.card = model, card
