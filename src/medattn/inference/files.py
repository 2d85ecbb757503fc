"""File-level inference: ``medattn predict`` and the model half of ``medattn evaluate``."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import DatasetError, MedattnError, MedattnIOError
from medattn.inference.lesions import measure_lesions
from medattn.inference.loading import LoadedModel, load_model
from medattn.inference.predict import predict_batch
from medattn.inference.render import heat_overlay, overlay
from medattn.utils.fileio import atomic_write_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".nii", ".gz", ".npy"}


def _stderr():
    """Progress bars go to stderr so that stdout stays parseable (``--format json``)."""
    from rich.console import Console

    return Console(stderr=True)


def iter_inputs(inputs: Sequence[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files given, and image files inside folders given (recursively, sorted)."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                    yield f
        elif p.is_file():
            yield p
        else:
            raise MedattnIOError(p, "no such file or folder")


def display_image(data: Any) -> np.ndarray:
    """An ``ImageData`` as uint8 for a model and for pictures (CT: soft-tissue window)."""
    from medattn.inference.render import to_rgb8
    from medattn.io import apply_window

    a = data.array
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4):
        raise MedattnIOError(data.meta.source, f"is a volume of shape {a.shape}; give 2D images (one slice)")
    if a.dtype == np.uint8:
        return a
    if (data.meta.modality or "").upper() == "CT":
        return (apply_window(a, "soft_tissue") * 255 + 0.5).astype(np.uint8)
    return to_rgb8(a) if a.ndim == 3 else to_rgb8(a)[..., 0]


def _write_png(path: Path, array: np.ndarray) -> None:
    from medattn.io import write_image

    write_image(path, array)


def predict_paths(model: str | os.PathLike[str] | LoadedModel, inputs: Sequence[str | os.PathLike[str]],
                  out: str | os.PathLike[str], tta: bool = False, threshold: float = 0.5,
                  batch_size: int = 4, progress: bool = True) -> list[Path]:
    """Predict every input image; write mask, overlay, attention PNGs and a JSON each. Returns the JSONs.

    Streams: at most ``batch_size`` images are in memory at a time.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medattn.io import read_image

    lm = model if isinstance(model, LoadedModel) else load_model(model)
    if lm.task != "segmentation":
        raise MedattnError(f"model {lm.name!r} is a {lm.task} model; `medattn predict` needs a segmentation model")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = list(iter_inputs(inputs))
    if not files:
        raise MedattnError("no input images found")
    written: list[Path] = []
    used: set[str] = set()

    def stem_for(path: Path) -> str:
        stem = path.name.removesuffix(".nii.gz") if path.name.endswith(".nii.gz") else path.stem
        cand, k = stem, 2
        while cand in used:
            cand, k = f"{stem}_{k}", k + 1
        used.add(cand)
        return cand

    def flush(batch: list[tuple[Path, Any, np.ndarray]]) -> None:
        preds = predict_batch(lm, [b[2] for b in batch], tta=tta)
        for (path, data, img), pred in zip(batch, preds, strict=True):
            stem = stem_for(path)
            mask = pred.prob > threshold
            _write_png(out / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
            _write_png(out / f"{stem}_overlay.png", overlay(img, mask))
            _write_png(out / f"{stem}_attention.png", heat_overlay(img, pred.attention))
            spacing = data.meta.spacing[-2:] if data.meta.spacing else None
            record = {
                "image": str(path),
                "model": lm.name,
                "weights": lm.source,
                "size": list(img.shape[:2]),
                "spacing_mm": list(spacing) if spacing else None,
                "threshold": threshold,
                "tta": tta,
                "lesions": measure_lesions(pred.prob, threshold, spacing),
            }
            record["lesion_count"] = len(record["lesions"])
            jp = out / f"{stem}.json"
            atomic_write_text(jp, json.dumps(record, indent=2) + "\n")
            written.append(jp)

    columns = (TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, console=_stderr(), transient=True) as bar:
        task = bar.add_task("predict", total=len(files))
        batch: list[tuple[Path, Any, np.ndarray]] = []
        for path in files:
            data = read_image(path)
            batch.append((path, data, display_image(data)))
            if len(batch) == batch_size:
                flush(batch)
                bar.advance(task, len(batch))
                batch = []
        if batch:
            flush(batch)
            bar.advance(task, len(batch))
    return written


def _select_samples(data: str | os.PathLike[str], split: str | os.PathLike[str] | None) -> list:
    from medattn.data import discover, load_split

    if split is None:
        index = discover(data)
        samples = [s for s in index.samples if s.mask is not None or s.extra_masks]
        if not samples:
            raise DatasetError(f"{data}: no image/mask pairs found (layout {index.layout})")
        return samples
    parts = load_split(split, root=None)
    keys = [k for k in parts if k == "test" or k.startswith("test")]
    if not keys:
        raise DatasetError(f"{split}: split has no test part (parts: {', '.join(parts)})")
    samples = [s for k in keys for s in parts[k]]
    return samples


def evaluate_model(model: str | os.PathLike[str], data: str | os.PathLike[str],
                   split: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] | None = None,
                   tta: bool = False, batch_size: int = 4, progress: bool = True) -> list[tuple[str, Path, Path]]:
    """Predict the labelled images of ``data`` (or the test part of ``split``) with ``model``.

    Writes 8-bit probability maps as PNG at each ground truth's size into
    ``out`` (default: a new temporary folder) and returns (id, prediction, ground truth)
    triples for :func:`medattn.evaluation.evaluate_pairs`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medattn.io import read_image

    lm = load_model(model)
    samples = _select_samples(data, split)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="medattn-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    triples: list[tuple[str, Path, Path]] = []
    names: set[str] = set()
    columns = (TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, console=_stderr(), transient=True) as bar:
        task = bar.add_task("predict", total=len(samples))
        for start in range(0, len(samples), batch_size):
            chunk = samples[start: start + batch_size]
            images = [display_image(read_image(s.image)) for s in chunk]
            for s, pred in zip(chunk, predict_batch(lm, images, tta=tta), strict=True):
                # PraNet toolbox convention: maps are stored at the ground truth's size
                name = s.id.replace("/", "__")
                if name in names:
                    raise DatasetError(f"two samples share the id {s.id!r}")
                names.add(name)
                target = out / f"{name}.png"
                _write_png(target, (pred.prob * 255 + 0.5).astype(np.uint8))
                gt = s.mask if s.mask is not None else s.extra_masks[0]
                triples.append((s.id, target, Path(gt)))
            bar.advance(task, len(chunk))
    return triples
