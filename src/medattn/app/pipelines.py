"""What the application runs on a case: segment, denoise, enhance, or a chain.

Models come from two places: weights bundled with the package
(``medattn.models.hub``) and checkpoints a user drops into
``<data_dir>/models/`` (any ``medattn train`` checkpoint: ``*.safetensors``
with its JSON sidecar). Each pipeline lists the models whose registry task
fits it.

A run reads the stored (de-identified) input, processes it slice by slice with
progress, writes every result file atomically, and only then commits the case
as ``done``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medattn.app.db import Case, Database, utcnow
from medattn.app.storage import CaseStore
from medattn.errors import MedattnError

PIPELINES: dict[str, str] = {
    "segment": "Segment lesions",
    "denoise": "Denoise low-dose CT",
    "enhance": "Enhance for lesion detection",
    "denoise+segment": "Denoise, then segment",
}
_TASK = {"segment": "segmentation", "denoise": "denoising", "enhance": "classification"}
Progress = Callable[[float, str], None]

# Extra checkpoints (name -> path) registered by the running application.
USER_MODELS: dict[str, Path] = {}


def scan_user_models(models_dir: Path) -> None:
    """Register every ``*.safetensors`` checkpoint with a JSON sidecar in ``models_dir``."""
    USER_MODELS.clear()
    if not models_dir.is_dir():
        return
    for p in sorted(models_dir.glob("*.safetensors")):
        if p.with_suffix(".json").is_file():
            USER_MODELS[p.stem] = p


def _card(name: str) -> dict[str, Any] | None:
    if name in USER_MODELS:
        try:
            meta = json.loads(USER_MODELS[name].with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return {"name": name, **{k: v for k, v in meta.items() if k in ("model", "task", "metrics", "epoch",
                                                                         "input_size", "data", "version")}}
    from medattn.models import hub

    path = hub.bundled_weights(name)
    if path is None:
        return None
    card = hub.model_card(path)
    return {"name": name, **card}


def _bundled_names() -> list[str]:
    from medattn.models import hub

    return sorted(p.stem for p in hub.WEIGHTS_DIR.glob("*.safetensors") if hub.is_bundled(p.stem))


def _card_task(card: dict[str, Any], fallback_model: str = "") -> str | None:
    """A model card's task, else its registry model's (``model`` is a name or ``{"name": ...}``); None if unknown."""
    from medattn.models import model_info

    if card.get("task") is not None:
        return card["task"]
    model = card.get("model", fallback_model)
    try:
        return model_info(model.get("name") if isinstance(model, dict) else model).task
    except MedattnError:
        return None


def _models_for(task: str) -> list[str]:
    """Names of the models whose task is ``task``: those installed into ``<data_dir>/models`` first (a
    deliberate local choice, so one of them is the default), then the bundled ones (the fallback)."""
    names = []
    for name, path in USER_MODELS.items():
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if _card_task(meta) == task:
            names.append(name)
    for name in _bundled_names():
        # an installed model of the same name replaces the bundled one (see _card)
        if name not in USER_MODELS and _card_task(_card(name) or {}, name) == task:
            names.append(name)
    return names


def catalog() -> dict[str, Any]:
    """Pipelines with their models, default model and availability."""
    out: dict[str, Any] = {}
    seg, den, enh = _models_for("segmentation"), _models_for("denoising"), _models_for("classification")
    for name, label in PIPELINES.items():
        models = {"segment": seg, "denoise": den, "enhance": enh, "denoise+segment": seg}[name]
        available = bool(models) and (name != "denoise+segment" or bool(den))
        out[name] = {"label": label, "models": models, "default": models[0] if models else None,
                     "available": available}
    return {"pipelines": out, "cards": {m: _card(m) for p in out.values() for m in p["models"]}}


def default_colorizer() -> str | None:
    """The colorizer the enhance pipeline uses: the first one installed into ``<data_dir>/models``, else the
    first bundled one, else None."""
    found = _models_for("colorization")
    return found[0] if found else None


def resolve(pipeline: str, model: str | None) -> str | None:
    """The model a new case will use; ``ValueError`` with a user-facing message if impossible."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
    info = catalog()["pipelines"][pipeline]
    if not info["available"]:
        raise ValueError(f"pipeline {pipeline!r} has no model installed")
    if pipeline == "denoise+segment":
        return _resolve_chain(model)
    if model is None:
        return info["default"]
    if model not in info["models"]:
        raise ValueError(f"model {model!r} cannot run pipeline {pipeline!r}; choose one of {', '.join(info['models'])}")
    return model


def _resolve_chain(model: str | None) -> str:
    """``"<denoiser>+<segmenter>"``; either part may be left out for the pipeline's default."""
    cat = catalog()["pipelines"]
    den, _, seg = (model or "").rpartition("+") if model and "+" in model else ("", "", model or "")
    den = den or cat["denoise"]["default"]
    seg = seg or cat["segment"]["default"]
    if den not in cat["denoise"]["models"]:
        raise ValueError(f"{den!r} is not a denoising model; choose one of {', '.join(cat['denoise']['models'])}")
    if seg not in cat["segment"]["models"]:
        raise ValueError(f"{seg!r} is not a segmentation model; choose one of {', '.join(cat['segment']['models'])}")
    return f"{den}+{seg}"


def model_version(name: str | None) -> str | None:
    if name and "+" in name:
        return "+".join(model_version(part) or "-" for part in name.split("+"))
    card = _card(name) if name else None
    if not card:
        return None
    return str(card.get("version") or card.get("sha256", "")[:12] or "") or None


def model_card(name: str | None) -> dict[str, Any] | None:
    if name and "+" in name:  # a chain: show the segmenter's card, the last model applied
        name = name.rsplit("+", 1)[1]
    return _card(name) if name else None


def run_case(db: Database, store: CaseStore, case_id: str, progress: Progress) -> None:
    """Process one case end to end (called by the worker)."""
    from medattn.app import processing

    with db.session() as s:
        case = s.get(Case, case_id)
        pipeline, model = case.pipeline, case.model_name
        inputs = [store.path(case.id, f.name) for f in case.files if f.kind == "input"]
        input_format = case.input_format
    with tempfile.TemporaryDirectory(prefix="medattn-case-", dir=store.scratch_dir()) as tmp:
        result = processing.process(pipeline, model, inputs, input_format, Path(tmp), progress,
                                    user_models=USER_MODELS)
        # Files first (atomic), then the database row in one transaction.
        with db.session() as s:
            case = s.get(Case, case_id)
            for kind, path, name in result.files:
                store.add_file(s, case, kind, path, name=name)
            case.meta = result.meta
            case.results = result.results
            case.modality = result.meta.get("modality")
            case.status, case.progress, case.message = "done", 1.0, ""
            case.finished_at = utcnow()


def as_uint8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip((a - lo) / (hi - lo) * 255 + 0.5, 0, 255).astype(np.uint8)
