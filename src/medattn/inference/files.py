"""File-level inference: ``medattn predict`` and the model half of ``medattn evaluate``."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medattn.errors import DatasetError, MedattnError, MedattnIOError
from medattn.inference.lesions import find_lesions, min_size_from_card
from medattn.inference.loading import LoadedModel, load_model
from medattn.inference.predict import predict_batch
from medattn.inference.render import heat_overlay, overlay
from medattn.utils.fileio import atomic_write_text
from medattn.utils.progress import progress_bar

if TYPE_CHECKING:
    from medattn.evaluation import EvalResult
    from medattn.evaluation.evaluator import PredType

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".nii", ".gz", ".npy"}


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


def segmentation_model(model: str | os.PathLike[str] | LoadedModel) -> LoadedModel:
    """``model`` loaded (unless it is already), or an error when it does not segment."""
    lm = model if isinstance(model, LoadedModel) else load_model(model)
    if lm.task != "segmentation":
        raise MedattnError(f"model {lm.name!r} is a {lm.task} model; `medattn predict` needs a segmentation model")
    return lm


def predict_paths(model: str | os.PathLike[str] | LoadedModel, inputs: Sequence[str | os.PathLike[str]],
                  out: str | os.PathLike[str], tta: bool | None = None, threshold: float | None = None,
                  batch_size: int = 4, progress: bool = True, zoom: int | None = None) -> list[Path]:
    """Predict every input image; write mask, overlay, attention PNGs and a JSON each. Returns the JSONs.

    ``tta`` / ``threshold`` / ``zoom`` None: the model card's (:meth:`LoadedModel.settings`); each JSON
    records the settings used. Streams: at most ``batch_size`` images are in memory at a time.
    """
    from medattn.io import read_image

    lm = segmentation_model(model)
    settings = lm.settings(tta, threshold, zoom)
    tta, threshold, zoom = settings["tta"], settings["threshold"], settings["zoom"]
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
        preds = predict_batch(lm, [b[2] for b in batch], tta=tta, zoom=zoom)
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
                "inference": settings,
                "lesions": find_lesions(pred.prob, threshold, spacing,
                                        min_size_from_card(lm.card, pred.prob.shape))[1],
            }
            record["lesion_count"] = len(record["lesions"])
            jp = out / f"{stem}.json"
            atomic_write_text(jp, json.dumps(record, indent=2) + "\n")
            written.append(jp)

    with progress_bar("predict", len(files), enabled=progress) as advance:
        batch: list[tuple[Path, Any, np.ndarray]] = []
        for path in files:
            data = read_image(path)
            batch.append((path, data, display_image(data)))
            if len(batch) == batch_size:
                flush(batch)
                advance(len(batch))
                batch = []
        if batch:
            flush(batch)
            advance(len(batch))
    return written


def evaluate_model(model: str | os.PathLike[str] | LoadedModel, data: str | os.PathLike[str],
                   split: str | os.PathLike[str] | None = None, *, out: str | os.PathLike[str],
                   tta: bool | None = None, batch_size: int = 4, progress: bool = True,
                   log: Callable[[str], None] | None = None, zoom: int | None = None) -> list[tuple[str, Path, Path]]:
    """Predict the labelled images of ``data`` chosen by ``split`` with ``model``.

    ``split`` is ``None`` (every labelled image), a plain list of file names or a
    medattn JSON split (see :func:`medattn.data.evaluation_samples`). Writes 8-bit
    probability maps as PNG at each ground truth's size into ``out`` and returns
    (id, prediction, ground truth) triples for :func:`medattn.evaluation.evaluate_pairs`.
    ``tta`` / ``zoom`` None: the model card's. ``log`` receives one line saying what is predicted.
    """
    from medattn.data import evaluation_samples
    from medattn.io import read_image

    lm = model if isinstance(model, LoadedModel) else load_model(model)
    zoom = lm.settings(zoom=zoom)["zoom"] if zoom is not None else None  # a bad value fails before any work
    samples = evaluation_samples(data, split)
    if log is not None:
        chosen = f"chosen by {split}" if split is not None else "(all labelled images; --split picks a test set)"
        h, w = lm.input_size
        log(f"predicting {len(samples)} images of {data} {chosen} with {lm.source} at {h}x{w}, "
            f"{lm.describe_tta(tta)}, {lm.describe_zoom(zoom)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    triples: list[tuple[str, Path, Path]] = []
    names: set[str] = set()
    with progress_bar("predict", len(samples), enabled=progress) as advance:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start: start + batch_size]
            images = [display_image(read_image(s.image)) for s in chunk]
            for s, pred in zip(chunk, predict_batch(lm, images, tta=tta, zoom=zoom), strict=True):
                # PraNet toolbox convention: maps are stored at the ground truth's size
                name = s.id.replace("/", "__")
                if name in names:
                    raise DatasetError(f"two samples share the id {s.id!r}")
                names.add(name)
                target = out / f"{name}.png"
                _write_png(target, (pred.prob * 255 + 0.5).astype(np.uint8))
                gt = s.mask if s.mask is not None else s.extra_masks[0]
                triples.append((s.id, target, Path(gt)))
            advance(len(chunk))
    return triples


def score_model(model: str | os.PathLike[str] | LoadedModel, data: str | os.PathLike[str],
                split: str | os.PathLike[str] | None = None, *, out: str | os.PathLike[str] | None = None,
                tta: bool | None = None, threshold: float | None = None, name: str = "",
                pred_type: PredType = "auto", workers: int | None = None, progress: bool = True,
                log: Callable[[str], None] | None = None, skip_unreadable: bool = False,
                zoom: int | None = None) -> EvalResult:
    """:func:`evaluate_model`, then the PraNet toolbox scores of its maps (``medattn evaluate --model``).

    ``tta`` / ``zoom`` / ``threshold`` (the mask that Dice, IoU, precision and recall score) None: the model
    card's; ``log`` receives one line saying what is predicted with which settings. Without ``out`` the maps go to a temporary folder that is removed afterwards,
    also when prediction fails or is interrupted.
    """
    from medattn.evaluation import evaluate_pairs

    lm = model if isinstance(model, LoadedModel) else load_model(model)
    label = name or (lm.name if isinstance(model, LoadedModel) else Path(model).stem)
    cut = lm.settings(tta, threshold)["threshold"]

    def say(line: str) -> None:
        if log is not None:
            log(f"{line}, Dice / IoU of p > {cut:g} ({'card' if threshold is None else 'given'})")

    def run(folder: str | os.PathLike[str]) -> EvalResult:
        pairs = evaluate_model(lm, data, split, out=folder, tta=tta, progress=progress, log=say, zoom=zoom)
        return evaluate_pairs(pairs, name=label, pred_type=pred_type, workers=workers, progress=progress,
                              skip_unreadable=skip_unreadable, threshold=cut)

    if out is not None:
        return run(out)
    with tempfile.TemporaryDirectory(prefix="medattn-eval-") as tmp:
        return run(tmp)
