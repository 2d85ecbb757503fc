"""The computation behind each pipeline, on the stored (de-identified) input.

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

from medattn.app.viewer import to_radiological, viewer_files
from medattn.errors import MedattnError

Progress = Callable[[float, str], None]


@dataclass
class ProcessResult:
    files: list[tuple[str, Path, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def _load_input(inputs: list[Path], input_format: str, tmp: Path) -> Any:
    from medattn.io import read_dicom_series, read_image

    if input_format == "dicom-series":
        folder = tmp / "series"
        folder.mkdir()
        for p in inputs:
            shutil.copyfile(p, folder / p.name)
        return read_dicom_series(folder)
    return read_image(inputs[0])


def _slices(data: Any) -> tuple[list[np.ndarray], bool]:
    """2D slices of the input and whether it is a volume."""
    a, layout = data.array, data.meta.layout
    if layout in ("ZHW", "ZHWC"):
        return [a[i] for i in range(a.shape[0])], True
    return [a], False


def _meta(data: Any, inputs: list[Path]) -> dict[str, Any]:
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


def _save_png(tmp: Path, name: str, array: np.ndarray) -> Path:
    from medattn.io import write_image

    path = tmp / name
    write_image(path, array)
    return path


def _user_model_path(model: str, user_models: dict[str, Path]) -> str:
    return str(user_models[model]) if model in user_models else model


_MODEL_CACHE: dict[tuple[str, float], Any] = {}


def load_cached(spec: str) -> Any:
    """``medattn.inference.load_model`` once per weights file (and its modification time) per process."""
    from medattn.inference import load_model
    from medattn.models import hub

    path = hub.bundled_weights(spec) or Path(spec)
    key = (str(spec), path.stat().st_mtime if path.exists() else 0.0)
    if key not in _MODEL_CACHE:
        if len(_MODEL_CACHE) >= 4:  # a handful of models fit in memory; drop the oldest
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = load_model(spec)
    return _MODEL_CACHE[key]


def _segment(slices: list[np.ndarray], data: Any, model: str, user_models: dict[str, Path], tmp: Path,
             progress: Progress, start: float, span: float, volume: bool) -> ProcessResult:
    from medattn.app.lesions import find_lesions, min_size_from_card
    from medattn.inference import predict_image
    from medattn.inference.files import display_image
    from medattn.inference.render import heat_overlay, mask_rgba, overlay, to_rgb8

    lm = load_cached(_user_model_path(model, user_models))
    progress(start, f"segmenting with {lm.name}")
    probs, atts, shown = [], [], []
    for i, sl in enumerate(slices):
        view = display_image(type(data)(sl, data.meta))
        pred = predict_image(lm, view)
        probs.append(pred.prob)
        atts.append(pred.attention)
        shown.append(view)
        progress(start + span * (i + 1) / len(slices), f"segmented slice {i + 1} of {len(slices)}")
    masks = np.stack([p > 0.5 for p in probs])
    k = int(np.argmax(masks.reshape(len(masks), -1).sum(1))) if masks.any() else len(slices) // 2
    spacing = data.meta.spacing[-2:] if data.meta.spacing else None
    min_size = min_size_from_card(lm.card, probs[0].shape)
    labels, lesions = find_lesions(np.stack(probs) if volume else probs[0], 0.5,
                                   data.meta.spacing if volume else spacing, min_size)
    res = ProcessResult()
    view = shown[k]
    res.files += [
        ("preview", _save_png(tmp, "preview.png", to_rgb8(view)), "preview.png"),
        ("overlay", _save_png(tmp, "overlay.png", overlay(view, masks[k])), "overlay.png"),
        ("mask_rgba", _save_png(tmp, "mask_rgba.png", mask_rgba(masks[k])), "mask_rgba.png"),
        ("attention", _save_png(tmp, "attention.png", heat_overlay(view, atts[k])), "attention.png"),
        ("mask", _save_png(tmp, "mask.png", masks[k].astype(np.uint8) * 255), "mask.png"),
    ]
    vol = masks.astype(np.uint8) if volume else masks[0].astype(np.uint8)
    np.save(tmp / "mask_volume.npy", vol)
    res.files.append(("mask_volume", tmp / "mask_volume.npy", "mask_volume.npy"))
    res.files += viewer_files(tmp, labels=labels, attention=np.stack(atts) if volume else atts[0])
    res.results = {"lesions": lesions, "min_lesion_area_px": min_size.px, "min_lesion_area_mm2": min_size.mm2,
                   "spacing": list(spacing) if spacing else None, "shown_slice": k, "model": lm.name}
    return res


def process(pipeline: str, model: str | None, inputs: list[Path], input_format: str, tmp: Path,
            progress: Progress, user_models: dict[str, Path] | None = None) -> ProcessResult:
    """Run ``pipeline`` with ``model`` on the case inputs; files are written under ``tmp``."""
    user_models = user_models or {}
    if not inputs:
        raise MedattnError("the case has no input file")
    if model is None:
        raise MedattnError(f"no model for pipeline {pipeline!r}")
    progress(0.02, "reading the input")
    data = _load_input(inputs, input_format, tmp)
    meta = _meta(data, inputs)  # the file's geometry: exports write masks back in its voxel order
    data = to_radiological(data)
    meta["display_orientation"] = data.meta.extra.get("display_orientation")
    slices, volume = _slices(data)
    denoised = None
    if pipeline == "segment":
        res = _segment(slices, data, model, user_models, tmp, progress, 0.05, 0.9, volume)
    elif pipeline in ("denoise", "denoise+segment"):
        from medattn.app.denoising import denoise_case

        den_model, seg_model = (model, None) if pipeline == "denoise" else _chain_models(model)
        res, denoised = denoise_case(data, den_model, user_models, inputs, input_format, tmp, progress,
                                     0.05, 0.9 if seg_model is None else 0.45)
        if seg_model is not None:
            seg = _segment(list(denoised), type(data)(denoised, data.meta), seg_model, user_models, tmp,
                           progress, 0.5, 0.45, volume)
            seg.files = [f for f in seg.files if f[0] != "preview"]
            res.files += seg.files
            res.results.update(seg.results)
    elif pipeline == "enhance":
        from medattn.app.enhancing import enhance_case
        from medattn.app.pipelines import default_colorizer

        res = enhance_case(data, model, user_models, tmp, progress, colorizer=default_colorizer())
    else:
        raise MedattnError(f"unknown pipeline {pipeline!r}")
    res.meta = {**meta, **res.meta}
    res.files += viewer_files(tmp, image=data, processed=denoised)
    progress(0.98, "saving results")
    return res


def _chain_models(model: str) -> tuple[str, str]:
    """``denoise+segment`` stores ``"<denoiser>+<segmenter>"`` or just the segmenter (default denoiser)."""
    from medattn.app.pipelines import catalog

    if "+" in model:
        den, seg = model.rsplit("+", 1)
        return den, seg
    den = catalog()["pipelines"]["denoise"]["default"]
    if den is None:
        raise MedattnError("no denoising model is installed")
    return den, model
