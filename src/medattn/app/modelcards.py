"""The models the application can run and their cards.

Models come from two places: weights bundled with the package
(``medattn.models.hub``) and checkpoints a user drops into
``<data_dir>/models/`` (any ``medattn train`` checkpoint: ``*.safetensors``
with its JSON sidecar). An installed model of a bundled model's name replaces
it. Each card declares its ``task`` (or its registry model's) and
``modality``: the input modalities the model was trained on; a card without
``modality`` is of unknown modality (the application runs it only on an
explicit override).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medattn.errors import MedattnError

# Extra checkpoints (name -> path) registered by the running application.
USER_MODELS: dict[str, Path] = {}
#: card fields the application shows for an installed model
_USER_CARD_FIELDS = ("model", "task", "metrics", "epoch", "input_size", "data", "version", "modality",
                     "intended_use", "summary")


def scan_user_models(models_dir: Path) -> None:
    """Register every ``*.safetensors`` checkpoint with a JSON sidecar in ``models_dir``."""
    USER_MODELS.clear()
    if not models_dir.is_dir():
        return
    for p in sorted(models_dir.glob("*.safetensors")):
        if p.with_suffix(".json").is_file():
            USER_MODELS[p.stem] = p


def card(name: str) -> dict[str, Any] | None:
    """The card of an installed or bundled model (with its ``name``), or None when there is no such model."""
    if name in USER_MODELS:
        try:
            meta = json.loads(USER_MODELS[name].with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return {"name": name, **{k: v for k, v in meta.items() if k in _USER_CARD_FIELDS}}
    from medattn.models import hub

    path = hub.bundled_weights(name)
    if path is None:
        return None
    return {"name": name, **hub.model_card(path)}


def modalities(name: str) -> list[str]:
    """The input modalities a model declares (empty: unknown modality)."""
    found = (card(name) or {}).get("modality")
    if isinstance(found, str):
        return [found]
    return [str(m) for m in found] if isinstance(found, list) else []


def _bundled_names() -> list[str]:
    from medattn.models import hub

    return sorted(p.stem for p in hub.WEIGHTS_DIR.glob("*.safetensors") if hub.is_bundled(p.stem))


def card_task(meta: dict[str, Any], fallback_model: str = "") -> str | None:
    """A model card's task, else its registry model's (``model`` is a name or ``{"name": ...}``); None if unknown."""
    from medattn.models import model_info

    if meta.get("task") is not None:
        return meta["task"]
    model = meta.get("model", fallback_model)
    try:
        return model_info(model.get("name") if isinstance(model, dict) else model).task
    except MedattnError:
        return None


def models_for(task: str) -> list[str]:
    """Names of the models whose task is ``task``: those installed into ``<data_dir>/models`` first (a
    deliberate local choice, so one of them is the default), then the bundled ones (the fallback)."""
    names = []
    for name, path in USER_MODELS.items():
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if card_task(meta) == task:
            names.append(name)
    for name in _bundled_names():
        # an installed model of the same name replaces the bundled one (see card)
        if name not in USER_MODELS and card_task(card(name) or {}, name) == task:
            names.append(name)
    return names


def model_version(name: str | None) -> str | None:
    """The version a case records: the card's ``version``, else the start of its weights' hash (chains: each)."""
    if name and "+" in name:
        return "+".join(model_version(part) or "-" for part in name.split("+"))
    found = card(name) if name else None
    if not found:
        return None
    return str(found.get("version") or found.get("sha256", "")[:12] or "") or None


def model_card(name: str | None) -> dict[str, Any] | None:
    """The card the case page shows (a chain: the segmenter's, the last model applied)."""
    if name and "+" in name:
        name = name.rsplit("+", 1)[1]
    return card(name) if name else None
