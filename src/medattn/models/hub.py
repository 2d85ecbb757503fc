"""Trained weights that ship with the package, and model files on disk.

A *bundled* model is a pair in ``src/medattn/weights/``::

    <name>.safetensors   the state dict
    <name>.json          its model card: {"model": "<registry name>", "options": {...},
                         "trained_on": "...", "metrics": {...}, ...}

:func:`load_bundled` rebuilds the model from the card's options and loads the
weights; :func:`save_bundled` writes such a pair (atomically).
:func:`load_model_file` reads any model file the CLI accepts: such a pair
anywhere on disk, or a torch checkpoint holding a dict with the model name,
its options and its state dict (see :data:`CHECKPOINT_KEYS`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medattn.errors import ConfigError, MedattnIOError
from medattn.utils.fileio import atomic_path, atomic_write_text

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

#: keys read from a torch checkpoint dict, first match wins
CHECKPOINT_KEYS = {
    "name": ("model", "model_name", "name", "arch"),
    "options": ("options", "model_options", "model_kwargs"),
    "state_dict": ("state_dict", "model_state_dict", "model_state", "weights"),
}


def bundled_weights(name: str) -> Path | None:
    """Path of the bundled ``<name>.safetensors`` (with its ``.json`` card), or None."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return path if path.is_file() and path.with_suffix(".json").is_file() else None


def is_bundled(name: str) -> bool:
    """True when trained weights for ``name`` ship with the package."""
    return bundled_weights(name) is not None


def model_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the JSON model card beside a ``.safetensors`` file."""
    card_path = Path(path).with_suffix(".json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedattnIOError(card_path, "model card not found (needed to rebuild the model)") from None
    except (OSError, ValueError) as exc:
        raise MedattnIOError(card_path, f"cannot read model card ({exc})") from exc
    if not isinstance(card, dict) or not isinstance(card.get("model"), str):
        raise MedattnIOError(card_path, 'model card must be a JSON object with a "model" name')
    return card


def check_state_fits(model: Any, state: dict[str, Any], what: str, source: str | os.PathLike[str]) -> None:
    """Raise a :class:`ConfigError` naming ``source`` unless ``state`` has exactly ``model``'s keys and shapes.

    ``what`` describes the model in the message (e.g. ``model 'cadn' with options {...}``).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = [f"{len(keys)} {kind}: {show(keys)}" for kind, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
                 if keys]
        raise ConfigError(f"{os.fspath(source)}: weights do not fit {what}: " + "; ".join(parts))


def _build_and_load(name: str, options: dict[str, Any], state: dict[str, Any], source: str | os.PathLike[str]):
    from medattn.models.registry import create

    model = create(name, **options)
    check_state_fits(model, state, f"model {name!r} with options {options}", source)
    model.load_state_dict(state)
    return model.eval()


def resolve_weights(spec: str | os.PathLike[str]) -> Path:
    """The ``.safetensors`` file named by ``spec``: a path (with its JSON card beside it) or a bundled model name."""
    path = Path(spec)
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise MedattnIOError(path, "weights file not found")
        if path.suffix != ".safetensors":
            raise MedattnIOError(path, "give a .safetensors file with its JSON card (as `medattn train` writes)")
        return path
    bundled = bundled_weights(str(spec))
    if bundled is None:
        raise ConfigError(f"{spec}: neither a .safetensors file nor a bundled model name "
                          f"(bundled: {', '.join(sorted(p.stem for p in WEIGHTS_DIR.glob('*.safetensors'))) or 'none'})")
    return bundled


def load_weights_into(model: Any, spec: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """Load the weights named by ``spec`` (:func:`resolve_weights`) into ``model`` (registry ``name``), strictly.

    The card's model name must be ``name`` and every key and shape must match, else a
    :class:`ConfigError` naming the file. Returns the card.
    """
    path = resolve_weights(spec)
    card = model_card(path)
    if card["model"] != name:
        raise ConfigError(f"{path}: the weights are for model {card['model']!r}, not {name!r}")
    state = _load_safetensors(path)
    check_state_fits(model, state, f"model {name!r} built from the config", path)
    model.load_state_dict(state)
    return card


def _load_safetensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # truncated / not a safetensors file
        raise MedattnIOError(path, f"cannot read weights ({type(exc).__name__}: {exc})") from exc


def load_bundled(name: str, **options: Any):
    """The bundled model ``name`` with its trained weights, in eval mode.

    ``options`` override the card's options (only ones that keep the weights'
    shapes make sense, e.g. ``deep_supervision=False``).
    """
    path = bundled_weights(name)
    if path is None:
        raise ConfigError(f"no trained weights for {name!r} ship with medattn; train it with `medattn train`")
    card = model_card(path)
    return _build_and_load(card["model"], {**card.get("options", {}), **options}, _load_safetensors(path), path)


def save_bundled(model: Any, name: str, options: dict[str, Any], card: dict[str, Any] | None = None,
                 folder: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<name>.safetensors`` and its card into ``folder`` (default: the package's weights)."""
    from safetensors.torch import save_model

    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    path = folder / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        save_model(model, str(tmp))
    meta = {**(card or {}), "model": (card or {}).get("model", name), "options": options}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def load_model_file(path: str | os.PathLike[str]):
    """A model rebuilt from a file: ``.safetensors`` + ``.json`` card, or a torch checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise MedattnIOError(path, "model file not found")
    if path.suffix == ".safetensors":
        card = model_card(path)
        return _build_and_load(card["model"], card.get("options", {}), _load_safetensors(path), path)
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MedattnIOError(path, f"cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict):
        raise MedattnIOError(path, "checkpoint does not hold a dict")

    def pick(kind: str) -> Any:
        return next((ckpt[k] for k in CHECKPOINT_KEYS[kind] if k in ckpt), None)

    name, options, state = pick("name"), pick("options") or {}, pick("state_dict")
    if isinstance(name, dict):  # {"model": {"name": ..., "options": ...}} as a training config writes it
        options = name.get("options", options)
        name = name.get("name")
    if not isinstance(name, str) or not isinstance(state, dict):
        raise MedattnIOError(path, "checkpoint names no model or holds no state dict "
                                   f"(expected keys {CHECKPOINT_KEYS['name'][0]!r} and {CHECKPOINT_KEYS['state_dict'][0]!r})")
    return _build_and_load(name, dict(options), state, path)
