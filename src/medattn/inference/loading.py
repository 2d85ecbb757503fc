"""Find and load a trained model: a bundled name, a ``.safetensors`` + card, a run folder, or a torch checkpoint.

A segmentation card says how the model is meant to be run in its ``inference`` block:
``{"input_size": [H, W], "tta": bool, "threshold": float, "zoom": int}`` (``medattn train`` writes it from the
config's ``data.input_size`` and ``inference`` section). :class:`LoadedModel` exposes these settings
and every consumer (``predict_batch``, ``medattn predict``, ``medattn evaluate --model``, the app)
uses them unless its caller says otherwise. Cards without the block (or a key of it) mean the
top-level ``input_size``, no TTA, threshold 0.5 and zoom 1 (what every consumer did before cards had it).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medattn.errors import ConfigError, MedattnIOError

#: the mask threshold of a card that does not say
DEFAULT_THRESHOLD = 0.5


def check_zoom(value: Any, source: str = "zoom") -> int:
    """``value`` when it is an integer >= 1 (the zoom of :func:`medattn.inference.predict_batch`), else a
    :class:`~medattn.errors.ConfigError` naming ``source`` (the card key or the option)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source} must be an integer >= 1 (1: no zoom windows), got {value!r}")
    return value


@dataclass
class LoadedModel:
    """A model ready for inference with the facts needed to feed it.

    Attributes:
        model: the ``nn.Module`` in eval mode.
        name: registry name of the architecture.
        source: bundled name or file the weights came from.
        card: the model card / checkpoint sidecar (may be empty).
        input_size: (H, W) the model was trained at; images are resized to it.
        in_channels: 1 (grayscale) or 3 (RGB).
        task: registry task (segmentation, denoising, ...).
        tta: the card's ``inference.tta``: average with the flipped inputs by default.
        threshold: the card's ``inference.threshold``: the mask is ``prob > threshold``.
        zoom: the card's ``inference.zoom``: also predict overlapping windows of 1/zoom of the image side
            (1: whole frame only; :func:`medattn.inference.predict.zoom_windows`).
    """

    model: Any
    name: str
    source: str
    card: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (256, 256)
    in_channels: int = 3
    task: str = "segmentation"
    tta: bool = False
    threshold: float = DEFAULT_THRESHOLD
    zoom: int = 1

    @property
    def version(self) -> str:
        return str(self.card.get("version") or self.card.get("trained_at") or "")

    def settings(self, tta: bool | None = None, threshold: float | None = None,
                 zoom: int | None = None) -> dict[str, Any]:
        """The inference settings of a run: the card's, with ``tta`` / ``threshold`` / ``zoom`` overriding when given."""
        return {"input_size": list(self.input_size), "tta": self.tta if tta is None else bool(tta),
                "threshold": self.threshold if threshold is None else float(threshold),
                "zoom": self.zoom if zoom is None else check_zoom(zoom, "--zoom")}

    def describe_tta(self, tta: bool | None = None) -> str:
        """``TTA on (card)``, ``TTA off (given)``, ...: the TTA used and where it came from."""
        used = self.tta if tta is None else tta
        return f"TTA {'on' if used else 'off'} ({'card' if tta is None else 'given'})"

    def describe_zoom(self, zoom: int | None = None) -> str:
        """``zoom 1 (card)``, ``zoom 3 (given)``, ...: the zoom used and where it came from."""
        return f"zoom {self.zoom if zoom is None else zoom} ({'card' if zoom is None else 'given'})"

    def describe_settings(self, tta: bool | None = None, threshold: float | None = None,
                          zoom: int | None = None) -> str:
        """One line naming the settings used and where each came from (the card or the caller)."""
        used = self.settings(tta, threshold, zoom)
        h, w = used["input_size"]
        return (f"inference settings: input {h}x{w} (card), {self.describe_tta(tta)}, "
                f"threshold {used['threshold']:g} ({'card' if threshold is None else 'given'}), "
                f"{self.describe_zoom(zoom)}")


def card_inference(card: dict[str, Any], source: str = "card") -> dict[str, Any]:
    """The validated inference settings of a card: ``{"input_size": [H, W] | None, "tta", "threshold", "zoom"}``.

    A missing block or key gives the defaults (input size None: the caller's fallback). Other keys
    of the block (a denoiser's ``keep_noise``) are left to their readers. A malformed value is a
    :class:`~medattn.errors.ConfigError` naming ``source`` and the key.
    """
    block = {} if card.get("inference") is None else card["inference"]
    if not isinstance(block, dict):
        raise ConfigError(f"{source}: inference must be an object, got {block!r}")
    size = block.get("input_size")
    if size is not None:
        size = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ConfigError(f"{source}: inference.input_size must be [H, W] of positive integers, got {size!r}")
    tta = block.get("tta", False)
    if not isinstance(tta, bool):
        raise ConfigError(f"{source}: inference.tta must be true or false, got {tta!r}")
    threshold = block.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"{source}: inference.threshold must be a number in [0, 1], got {threshold!r}")
    zoom = check_zoom(block.get("zoom", 1), f"{source}: inference.zoom")
    return {"input_size": size, "tta": tta, "threshold": float(threshold), "zoom": zoom}


def _resolve_file(spec: Path) -> Path:
    if spec.is_dir():
        for cand in ("best.safetensors", "last.safetensors", "model.safetensors"):
            if (spec / cand).is_file():
                return spec / cand
        found = sorted(spec.glob("*.safetensors"))
        if len(found) == 1:
            return found[0]
        raise MedattnIOError(spec, "folder holds no best.safetensors / last.safetensors checkpoint")
    return spec


def load_model(spec: str | os.PathLike[str], device: str = "cpu", **options: Any) -> LoadedModel:
    """Load ``spec``: a bundled model name (``medattn models``), a checkpoint file, or a run folder."""
    from medattn.models import hub, model_info

    spec_s = os.fspath(spec)
    if hub.is_bundled(spec_s):
        path = hub.bundled_weights(spec_s)
        card = hub.model_card(path)
        model = hub.load_bundled(spec_s, **options)
        source = spec_s
    else:
        path = Path(spec_s)
        if not path.exists():
            raise ConfigError(
                f"{spec_s}: no such checkpoint file or folder, and no bundled model of that name "
                "(see `medattn models --json`, field bundled)"
            )
        path = _resolve_file(path)
        card = hub.model_card(path) if path.suffix == ".safetensors" else {}
        model = hub.load_model_file(path)
        source = str(path)
    name = card.get("model") or getattr(model, "registry_name", None) or type(model).__name__
    info = None
    with contextlib.suppress(ConfigError):
        info = model_info(name)
    settings = card_inference(card, str(Path(path).with_suffix(".json")))
    size = settings["input_size"] or card.get("input_size") or (list(info.input_size) if info else [256, 256])
    if isinstance(size, int):
        size = [size, size]
    in_ch = int(card.get("options", {}).get("in_channels", getattr(model, "in_channels", 3)))
    model = model.to(device).eval()
    return LoadedModel(model=model, name=name, source=source, card=card, input_size=(int(size[0]), int(size[1])),
                       in_channels=in_ch, task=card.get("task") or (info.task if info else "segmentation"),
                       tta=settings["tta"], threshold=settings["threshold"], zoom=settings["zoom"])
