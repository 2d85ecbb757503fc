"""Shared helpers of the pipelines: reading a case's input, the result type, writing result pictures,
and a per-process model cache. Every pipeline module imports this one; it imports none of them.

Every pipeline returns a :class:`ProcessResult`: files to attach to the case
(kind, path, stored name), de-identified metadata, and results (lesion table,
measurements). The worker stores the files, then commits the case.

File kinds the viewer and the exports understand: ``preview`` (the input as
shown), ``processed`` (the denoised or enhanced picture), ``overlay`` (mask
burnt into the picture, for the report), ``mask_rgba`` (transparent mask layer
for the adjustable-opacity view), ``attention`` (attention heat map),
``mask`` (PNG 0/255 of the shown slice), ``mask_volume`` (``.npy`` of the
whole mask), ``processed_file`` (the denoised image in the input's format).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Progress = Callable[[float, str], None]


@dataclass
class ProcessResult:
    files: list[tuple[str, Path, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def load_input(inputs: list[Path], input_format: str, tmp: Path) -> Any:
    """The case input as a ``medattn.io`` image (a DICOM series is copied into ``tmp/series`` to be read)."""
    from medattn.io import read_dicom_series, read_image

    if input_format == "dicom-series":
        folder = tmp / "series"
        folder.mkdir(exist_ok=True)
        for p in inputs:
            shutil.copyfile(p, folder / p.name)
        return read_dicom_series(folder)
    return read_image(inputs[0])


def slices(data: Any) -> tuple[list[np.ndarray], bool]:
    """2D slices of the input and whether it is a volume."""
    a, layout = data.array, data.meta.layout
    if layout in ("ZHW", "ZHWC"):
        return [a[i] for i in range(a.shape[0])], True
    return [a], False


def case_meta(data: Any, inputs: list[Path]) -> dict[str, Any]:
    """De-identified facts about the input shown on the case page (shape, layout, modality, spacing...)."""
    m = data.meta
    meta: dict[str, Any] = {
        "shape": list(data.array.shape),
        "layout": m.layout,
        "modality": m.modality,
        "spacing": list(m.spacing) if m.spacing else None,
        "format": m.format,
    }
    if m.affine is not None:
        meta["affine"] = np.asarray(m.affine).tolist()
    files = m.extra.get("files") if isinstance(m.extra, dict) else None
    if files:
        meta["slice_files"] = [Path(f).name for f in files]
    elif m.format == "dicom":
        meta["slice_files"] = [inputs[0].name]
    return meta


def save_png(tmp: Path, name: str, array: np.ndarray) -> Path:
    """Write ``array`` as ``tmp/name`` (PNG) and return the path."""
    from medattn.io import write_image

    path = tmp / name
    write_image(path, array)
    return path


def user_model_path(model: str, user_models: dict[str, Path]) -> str:
    """What ``medattn.inference.load_model`` takes for ``model``: an installed checkpoint's path, else the name."""
    return str(user_models[model]) if model in user_models else model


_MODEL_CACHE: dict[tuple[str, float, float], Any] = {}


def load_cached(spec: str) -> Any:
    """``medattn.inference.load_model`` once per weights file per process; a changed weights file or card
    (its modification time: an edited ``inference`` block) loads again."""
    from medattn.inference import load_model
    from medattn.models import hub

    path = hub.bundled_weights(spec) or Path(spec)
    key = (str(spec), *(p.stat().st_mtime if p.exists() else 0.0 for p in (path, path.with_suffix(".json"))))
    if key not in _MODEL_CACHE:
        if len(_MODEL_CACHE) >= 4:  # a handful of models fit in memory; drop the oldest
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = load_model(spec)
    return _MODEL_CACHE[key]
