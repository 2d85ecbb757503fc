"""``check_dataset``: what a dataset folder holds and what is wrong with it.

Image sizes come from file headers (Pillow opens lazily, no pixel is decoded);
masks are decoded through :func:`medattn.io.read_gray` to summarise their values
under the project rule *foreground = gray value > 127*. Files are inspected by a
small thread pool (decoders release the GIL), with a rich progress bar.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.layouts import discover, load_kvasir_boxes
from medattn.data.types import DatasetIndex, Sample
from medattn.errors import MedattnError, MedattnIOError

# Listing every file of a broken dataset helps nobody: show the first few.
MAX_LISTED = 10


@dataclass
class MaskSummary:
    """Values found in the mask files.

    Attributes:
        files: mask files decoded.
        values: distinct gray values over all masks (``None`` when more than 32).
        n_values: number of distinct gray values.
        binary: masks holding only 0 and 255 (or only one value).
        antialiased: masks with values other than 0 and 255 (soft edges, JPEG noise).
        zero_one: masks whose values are only 0 and 1 (labels: empty under the > 127 rule).
        empty: samples with no foreground pixel (> 127).
        non_binary_fraction: fraction of all mask pixels that are neither 0 nor 255.
        ambiguous_fraction: fraction of pixels in 64..191, where the threshold choice matters.
        foreground_fraction: mean over masks of the foreground share.
        colour_files: masks stored with colour channels.
    """

    files: int = 0
    values: list[int] | None = None
    n_values: int = 0
    binary: int = 0
    antialiased: int = 0
    zero_one: int = 0
    empty: int = 0
    non_binary_fraction: float = 0.0
    ambiguous_fraction: float = 0.0
    foreground_fraction: float = 0.0
    colour_files: int = 0


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`; ``to_dict()`` gives the JSON form."""

    root: str
    layout: str
    samples: int
    labelled: int
    unlabeled: int
    subsets: dict[str, int]
    unmatched_images: list[str]
    unmatched_masks: list[str]
    height_range: tuple[int, int] | None
    width_range: tuple[int, int] | None
    image_modes: dict[str, int]
    masks: MaskSummary
    mask_rule: str = "foreground = gray value > 127 (colour masks converted to luminance first)"
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unmatched_images and not self.unmatched_masks

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


@dataclass
class _FileResult:
    size: tuple[int, int] | None = None  # (H, W)
    mode: str = ""
    hist: np.ndarray | None = None
    fg: int = 0
    pixels: int = 0
    colour_masks: int = 0
    zero_one: bool = False
    problems: list[str] = field(default_factory=list)


def _header_size(path: Path) -> tuple[tuple[int, int], str]:
    """(H, W) and mode from the header; falls back to a full read for formats Pillow lacks."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return (im.size[1], im.size[0]), im.mode
    except Image.DecompressionBombError as exc:  # not an OSError: would escape as a traceback
        raise MedattnIOError(path, f"refused as a possible decompression bomb: {str(exc).split(', could')[0]}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        from medattn.io import read_image

        data = read_image(path)
        shape = data.array.shape
        return (shape[-3], shape[-2]) if data.meta.layout.endswith("C") else (shape[-2], shape[-1]), "?"


def _inspect(sample: Sample) -> _FileResult:
    from medattn.io import read_gray

    res = _FileResult()
    try:
        res.size, res.mode = _header_size(sample.image)
    except (MedattnError, OSError, ValueError) as exc:
        res.problems.append(
            f"unreadable image: {exc}" if str(sample.image) in str(exc) else f"{sample.image}: {exc}"
        )
        return res
    masks = [m for m in (sample.mask, *sample.extra_masks) if m is not None]
    fg_union: np.ndarray | None = None
    hist = np.zeros(256, np.int64)
    for m in masks:
        try:
            msize, mmode = _header_size(m)
            gray = read_gray(m)
        except (MedattnError, OSError, ValueError) as exc:
            res.problems.append(f"unreadable mask: {exc}" if str(m) in str(exc) else f"{m}: {exc}")
            return res
        if msize != res.size:
            res.problems.append(
                f"{m}: mask is {msize[1]}x{msize[0]} but image {sample.image.name} is {res.size[1]}x{res.size[0]}"
            )
            return res
        if mmode not in ("L", "1", "P", "I", "I;16", "F"):
            res.colour_masks += 1
        h = np.bincount(gray.ravel(), minlength=256)
        hist += h
        fg = gray > 127
        fg_union = fg if fg_union is None else (fg_union | fg)
        if h[2:].sum() == 0 and h[1] > 0:
            res.zero_one = True
    if fg_union is not None:
        res.hist = hist
        res.fg = int(fg_union.sum())
        res.pixels = fg_union.size
    return res


def _kvasir_box_problems(index: DatasetIndex, sizes: dict[str, tuple[int, int]]) -> list[str]:
    path = index.root / "kavsir_bboxes.json"
    if not path.is_file():
        return []
    import json

    raw = json.loads(path.read_text(encoding="utf-8"))
    boxes = load_kvasir_boxes(index.root)
    out = []
    for sid, (h, w) in sizes.items():
        entry = raw.get(sid)
        if entry is None:
            continue
        if (entry.get("height"), entry.get("width")) != (h, w):
            out.append(
                f"{path}: '{sid}' is listed as {entry.get('width')}x{entry.get('height')}, image is {w}x{h}"
            )
        for xmin, ymin, xmax, ymax in boxes.get(sid, []):
            if not (0 <= xmin < xmax <= w and 0 <= ymin < ymax <= h):
                out.append(f"{path}: '{sid}' box {(xmin, ymin, xmax, ymax)} lies outside the {w}x{h} image")
    return out


def _listed(kind: str, items: Sequence[str]) -> str:
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {kind}: {', '.join(items[:MAX_LISTED])}{more}"


def check_dataset(
    path: str | Path,
    layout: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CheckReport:
    """Discover the dataset in ``path`` and inspect every file (sizes, mask values, problems).

    ``workers`` defaults to the number of CPU cores (at most 4).
    """
    start = time.perf_counter()
    index = discover(path, layout=layout)
    workers = workers or min(4, os.cpu_count() or 1)
    results: list[_FileResult] = []
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("checking {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(_inspect, index.samples, chunksize=1)
        if progress:
            with bar:
                task = bar.add_task(index.root.name, total=len(index.samples))
                for r in it:
                    results.append(r)
                    bar.advance(task)
        else:
            results = list(it)

    problems = list(index.problems)
    for r in results:
        problems += r.problems
    sizes = [r.size for r in results if r.size is not None]
    labelled = [(s, r) for s, r in zip(index.samples, results, strict=True) if r.hist is not None]
    summary = MaskSummary(files=sum(1 + len(s.extra_masks) for s, _ in labelled))
    if labelled:
        total = np.sum([r.hist for _, r in labelled], axis=0)
        present = np.flatnonzero(total)
        summary.n_values = int(present.size)
        summary.values = [int(v) for v in present] if present.size <= 32 else None
        pixel_count = int(total.sum())
        summary.non_binary_fraction = float((pixel_count - total[0] - total[255]) / pixel_count)
        summary.ambiguous_fraction = float(total[64:192].sum() / pixel_count)
        for _, r in labelled:
            assert r.hist is not None
            values = set(np.flatnonzero(r.hist).tolist())
            if values <= {0, 255} or len(values) == 1:
                summary.binary += 1
            else:
                summary.antialiased += 1
            summary.zero_one += int(r.zero_one)
            summary.colour_files += r.colour_masks
        fractions = [r.fg / r.pixels for _, r in labelled]
        summary.foreground_fraction = float(np.mean(fractions))
        empty = [s.id for s, r in labelled if r.fg == 0]
        summary.empty = len(empty)
        if empty:
            problems.append(_listed("empty masks (no pixel > 127)", empty))
        zero_one = [s.id for s, r in labelled if r.zero_one]
        if zero_one:
            problems.append(
                _listed(
                    "masks stored as 0/1 labels (empty under the > 127 rule; rescale them to 0/255)", zero_one
                )
            )
    if index.layout == "kvasir-seg":
        problems += _kvasir_box_problems(
            index, {s.id: r.size for s, r in zip(index.samples, results, strict=True) if r.size}
        )
    subsets = dict(Counter(s.dataset for s in index.samples))
    n_lab = sum(1 for s in index.samples if s.mask is not None or s.extra_masks)
    return CheckReport(
        root=str(index.root),
        layout=index.layout,
        samples=len(index.samples),
        labelled=n_lab,
        unlabeled=len(index.samples) - n_lab,
        subsets=subsets,
        unmatched_images=[str(p) for p in index.unmatched_images],
        unmatched_masks=[str(p) for p in index.unmatched_masks],
        height_range=(min(h for h, _ in sizes), max(h for h, _ in sizes)) if sizes else None,
        width_range=(min(w for _, w in sizes), max(w for _, w in sizes)) if sizes else None,
        image_modes=dict(Counter(r.mode for r in results if r.mode)),
        masks=summary,
        problems=problems,
        seconds=time.perf_counter() - start,
    )
