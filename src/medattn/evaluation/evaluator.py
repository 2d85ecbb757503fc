"""PraNet-compatible evaluation of prediction files against ground-truth masks.

Reading rules (docs/metrics.md has the full list):

* files pair by stem: prediction ``x.png`` matches ground truth ``x.jpg``;
* ground truth: :func:`medattn.io.read_mask` (gray value > 127);
* prediction: :func:`medattn.io.read_gray` (8-bit); a *binary* prediction
  (``pred_type="binary"``, or in ``"auto"`` mode a map with no value in
  32..223, e.g. a 0/255 PNG or a JPEG-saved mask) is a hard mask, binarised at
  > 127; anything else is a probability map scored exactly as the toolbox does;
* a prediction of another size is resized to its ground truth's size on the
  8-bit map: bilinear (Pillow, which also low-pass filters when shrinking,
  like MATLAB ``imresize``) for probability maps, nearest neighbour for
  binary ones so they stay binary;
* ``dice``, ``iou``, ``precision``, ``recall`` use the prediction as stored
  at p > 0.5 (8-bit value > 127; ``threshold`` t: value > floor(255 t), so
  ``medattn evaluate --model`` scores the mask its model card asks for), the
  other scores the toolbox's min-max normalised map.

Images are scored in a pool of worker processes (chunks of images per task);
a handful of images is scored in this process. A pair whose file cannot be
read is an error, or with ``skip_unreadable=True`` (``medattn evaluate``) is
left out and reported (:attr:`EvalResult.skipped`) while the others are scored.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from medattn.errors import MedattnError, MedattnIOError
from medattn.metrics.base import finite_mean
from medattn.metrics.segmentation import confusion, scores_from_confusion
from medattn.metrics.sod import SOD_NAMES, sod_scores
from medattn.utils.progress import progress_bar

#: metric keys of every result row, in table order
METRIC_NAMES = (*SOD_NAMES, "dice", "iou", "precision", "recall")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
PredType = Literal["auto", "prob", "binary"]
#: an 8-bit map with no value in [BINARY_LOW, BINARY_HIGH] counts as a hard mask in auto mode
BINARY_LOW, BINARY_HIGH = 32, 223
SERIAL_BELOW = 8  # fewer images than this are scored without worker processes


@dataclass
class EvalResult:
    """Per-image rows and the data-set row of one evaluation."""

    name: str
    mean: dict[str, float]
    images: list[dict[str, float | str]]
    binary_count: int = 0  # predictions scored as hard masks
    unmatched_pred: list[str] = field(default_factory=list)
    unmatched_gt: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message (naming the file) per pair not scored
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # mean em/dice/iou curves, index t = t/255

    @property
    def count(self) -> int:
        return len(self.images)

    def to_dict(self) -> dict:
        """The JSON document: one key per metric (data-set values), ``name``, ``count``, ``images``."""
        out: dict = {"name": self.name, "count": self.count}
        out.update({k: _json_float(self.mean[k]) for k in METRIC_NAMES})
        out["images"] = [{k: _json_float(v) for k, v in row.items()} for row in self.images]
        return out


def _json_float(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _image_files(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise MedattnIOError(folder, f"{role} folder does not exist" if not folder.exists() else "not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise MedattnIOError(path, f"two {role} files share the name {path.stem!r}: {files[path.stem].name}")
        files[path.stem] = path
    return files


def pair_by_stem(pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str]):
    """``(pairs, unmatched_pred, unmatched_gt)``; pairs are ``(id, pred_path, gt_path)`` sorted by id."""
    preds = _image_files(Path(pred_dir), "prediction")
    gts = _image_files(Path(gt_dir), "ground-truth")
    pairs = [(stem, preds[stem], gts[stem]) for stem in sorted(preds.keys() & gts.keys())]
    return pairs, sorted(preds.keys() - gts.keys()), sorted(gts.keys() - preds.keys())


def is_binary_map(pred: np.ndarray) -> bool:
    """True when an 8-bit map has no value in 32..223 (a hard mask, possibly JPEG-compressed)."""
    hist = np.bincount(pred.ravel(), minlength=256)
    return not hist[BINARY_LOW : BINARY_HIGH + 1].any()


def _resize(pred: np.ndarray, shape: tuple[int, int], binary: bool) -> np.ndarray:
    from PIL import Image

    h, w = shape
    mode = Image.Resampling.NEAREST if binary else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(pred).resize((w, h), mode))


def score_arrays(
    pred: np.ndarray, gt: np.ndarray, pred_type: PredType = "auto", threshold: float = 0.5
) -> tuple[dict[str, float], dict[str, np.ndarray], bool]:
    """Score one 8-bit prediction against a boolean mask: (row, curves, scored as binary).

    The overlap scores use the mask p > ``threshold`` of a probability map (a binary map: its mask)."""
    if pred_type not in ("auto", "prob", "binary"):
        raise ValueError(f"pred_type must be auto, prob or binary, got {pred_type!r}")
    binary = pred_type == "binary" or (pred_type == "auto" and is_binary_map(pred))
    if binary:
        pred = np.where(pred > 127, np.uint8(255), np.uint8(0))
    if pred.shape != gt.shape:
        pred = _resize(pred, gt.shape, binary)
    row, curves = sod_scores(pred, gt, binary=binary, return_curves=True)
    overlap = scores_from_confusion(*confusion(pred > int(threshold * 255), gt))
    for key in ("dice", "iou", "precision", "recall"):
        row[key] = overlap[key]
    return row, curves, binary


def _score_files(pred_path: Path, gt_path: Path, pred_type: PredType, threshold: float):
    from medattn.io import read_gray, read_mask

    gt = read_mask(gt_path)
    pred = read_gray(pred_path)
    return score_arrays(pred, gt, pred_type, threshold)


Scored = tuple[str, dict, dict, bool]  # (id, row, curves, scored as binary)


def _score_chunk(chunk: Sequence[tuple[str, Path, Path]], pred_type: PredType,
                 threshold: float = 0.5) -> tuple[list[Scored], list[str]]:
    """Worker task: the scored pairs of a chunk and one message per pair that could not be read."""
    out: list[Scored] = []
    errors: list[str] = []
    for image_id, pred_path, gt_path in chunk:
        try:
            row, curves, binary = _score_files(pred_path, gt_path, pred_type, threshold)
        except MedattnError as exc:  # MedattnIOError does not survive pickling: send the text
            errors.append(str(exc))
            continue
        out.append((image_id, row, curves, binary))
    return out, errors


def _pool_context():
    # fork is cheapest, but not safe once torch has started its thread pools
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and "torch" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def default_workers() -> int:
    """Worker processes: the CPUs this process may use (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _run(
    pairs: Sequence[tuple[str, Path, Path]],
    pred_type: PredType,
    workers: int,
    advance: Callable[[int], None],
    threshold: float = 0.5,
) -> tuple[list[Scored], list[str]]:
    """Score every pair: (results in the order of ``pairs``, messages of the pairs skipped)."""
    results: list[Scored] = []
    errors: list[str] = []
    if workers <= 1 or len(pairs) < SERIAL_BELOW:
        for pair in pairs:
            scored, failed = _score_chunk([pair], pred_type, threshold)
            results += scored
            errors += failed
            advance(1)
        return results, errors
    # several chunks per worker balance uneven image sizes
    size = max(1, min(16, math.ceil(len(pairs) / (workers * 4))))
    chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        futures = {pool.submit(_score_chunk, chunk, pred_type, threshold): len(chunk) for chunk in chunks}
        for fut in as_completed(futures):
            scored, failed = fut.result()
            results += scored
            errors += failed
            advance(futures[fut])
    order = {pair[0]: i for i, pair in enumerate(pairs)}
    results.sort(key=lambda r: order[r[0]])
    return results, sorted(errors)


def aggregate(
    results: Iterable[Scored], name: str = ""
) -> EvalResult:
    """Data-set row from per-image results, following the toolbox for maxEm and maxDice."""
    results = list(results)
    images: list[dict[str, float | str]] = [{"id": image_id, **row} for image_id, row, _, _ in results]
    mean = {key: finite_mean(r[key] for r in images)[0] for key in METRIC_NAMES}
    curves: dict[str, np.ndarray] = {}
    if results:
        curves = {key: np.mean([c[key] for _, _, c, _ in results], axis=0) for key in ("em", "dice", "iou")}
        mean["maxEm"] = float(curves["em"].max())
        mean["maxDice"] = float(curves["dice"].max())
    return EvalResult(
        name=name,
        mean=mean,
        images=images,
        binary_count=sum(1 for *_, b in results if b),
        curves=curves,
    )


def evaluate_pairs(
    pairs: Sequence[tuple[str, str | os.PathLike[str], str | os.PathLike[str]]],
    *,
    name: str = "",
    pred_type: PredType = "auto",
    workers: int | None = None,
    progress: bool = False,
    skip_unreadable: bool = False,
    threshold: float = 0.5,
) -> EvalResult:
    """Evaluate ``(id, prediction path, ground-truth path)`` triples.

    Args:
        pairs: the images to score; ids must be unique.
        name: label of the result (method or data-set name).
        pred_type: ``"auto"``, ``"prob"`` (always a probability map, exactly the
            toolbox) or ``"binary"`` (always a hard mask).
        workers: processes to use; default: the available CPUs (max 8).
        progress: show a progress bar on stderr (when it is a terminal).
        skip_unreadable: leave a pair whose file cannot be read out of the scores
            and put its message (naming the file) in :attr:`EvalResult.skipped`
            (``medattn evaluate`` does); by default such a pair is an error.
        threshold: ``dice``, ``iou``, ``precision`` and ``recall`` score the mask
            p > threshold of a probability map (8-bit value > floor(255 threshold)).

    Raises :class:`~medattn.errors.MedattnError` with the first unreadable file's
    message when a pair cannot be read (unless skipped) or when no pair can.
    """
    if not pairs:
        raise MedattnError("nothing to evaluate: no prediction matches a ground-truth file")
    clean = [(str(i), Path(p), Path(g)) for i, p, g in pairs]
    ids = [c[0] for c in clean]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise MedattnError(f"image ids must be unique, repeated: {', '.join(dup[:5])}")
    workers = default_workers() if workers is None else max(1, int(workers))
    with progress_bar(f"scoring {name or 'predictions'}", len(clean), enabled=progress) as advance:
        results, errors = _run(clean, pred_type, workers, advance, threshold)
    if errors and (not results or not skip_unreadable):
        more = f" (and {len(errors) - 1} more pairs that cannot be read)" if len(errors) > 1 else ""
        raise MedattnError(errors[0] + more)
    result = aggregate(results, name=name)
    result.skipped = errors
    return result


def evaluate_folders(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    *,
    name: str = "",
    pred_type: PredType = "auto",
    workers: int | None = None,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
    skip_unreadable: bool = False,
) -> EvalResult:
    """Pair two folders by file stem and evaluate; ``warn`` receives one line per unmatched group.

    ``skip_unreadable`` as for :func:`evaluate_pairs`.
    """
    pairs, lonely_pred, lonely_gt = pair_by_stem(pred_dir, gt_dir)
    if not pairs:
        raise MedattnError(
            f"no prediction in {pred_dir} matches a ground-truth file in {gt_dir} by name "
            f"({len(lonely_pred)} predictions, {len(lonely_gt)} ground-truth files)"
        )
    if warn is not None:
        for names, what in ((lonely_pred, "predictions without ground truth"),
                            (lonely_gt, "ground-truth files without prediction")):  # fmt: skip
            if names:
                more = ", ..." if len(names) > 5 else ""
                warn(f"{len(names)} {what}: {', '.join(names[:5])}{more}")
    result = evaluate_pairs(pairs, name=name, pred_type=pred_type, workers=workers, progress=progress,
                            skip_unreadable=skip_unreadable)
    result.unmatched_pred, result.unmatched_gt = lonely_pred, lonely_gt
    return result
