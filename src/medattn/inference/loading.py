"""Find and load a trained model: a bundled name, a ``.safetensors`` + card, a run folder, or a torch checkpoint."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medattn.errors import ConfigError, MedattnIOError


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
    """

    model: Any
    name: str
    source: str
    card: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (256, 256)
    in_channels: int = 3
    task: str = "segmentation"

    @property
    def version(self) -> str:
        return str(self.card.get("version") or self.card.get("trained_at") or "")


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
    size = card.get("input_size") or (list(info.input_size) if info else [256, 256])
    if isinstance(size, int):
        size = [size, size]
    in_ch = int(card.get("options", {}).get("in_channels", getattr(model, "in_channels", 3)))
    model = model.to(device).eval()
    return LoadedModel(model=model, name=name, source=source, card=card, input_size=(int(size[0]), int(size[1])),
                       in_channels=in_ch, task=card.get("task") or (info.task if info else "segmentation"))
