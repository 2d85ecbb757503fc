"""Checkpoints of a run folder, all written atomically (temporary file, then rename).

* ``best.safetensors`` / ``last.safetensors``: model weights only, each with a JSON card
  (``best.json`` / ``last.json``): ``{"model", "options", "task", "input_size", "epoch",
  "metrics", "config", "version"}``, the format of :mod:`medattn.models.hub`, so
  ``medattn predict --model RUN_DIR`` and :func:`medattn.inference.load_model` read them;
* ``state.pt``: everything ``medattn train --resume RUN_DIR`` needs to continue exactly:
  model, optimiser, scheduler, epoch, best metric, early-stopping counter, history and
  the RNG states (Python, NumPy, torch, CUDA).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medattn.errors import MedattnIOError
from medattn.utils.fileio import atomic_path

STATE_FILE = "state.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return getattr(model, "module", model)


def save_checkpoint(run_dir: str | os.PathLike[str], tag: str, model: nn.Module, *, name: str,
                    options: dict[str, Any], task: str = "segmentation", input_size: tuple[int, int] | None = None,
                    epoch: int | None = None, metrics: dict[str, Any] | None = None,
                    config: dict[str, Any] | None = None, version: str | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``<tag>.safetensors`` + ``<tag>.json`` into ``run_dir``; returns the weights' path.

    ``options`` are the builder keyword arguments that rebuild the model
    (``medattn.models.create(name, **options)``), including ``in_channels`` / ``num_classes``.
    """
    from medattn.models.hub import save_bundled

    card: dict[str, Any] = {
        "model": name,
        "task": task,
        "input_size": list(input_size) if input_size is not None else None,
        "epoch": epoch,
        "metrics": metrics or {},
        "config": config or {},
        "version": version or "",
        **(extra or {}),
    }
    return save_bundled(unwrap(model), tag, portable_options(unwrap(model), options), card, folder=Path(run_dir))


# Options that only initialise weights from a file: the checkpoint's own weights replace them.
INIT_ONLY_OPTIONS = ("pretrained", "encoder_pretrained", "pretrained_encoder", "swin_pretrained")


def portable_options(model: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    """Builder options that rebuild ``model`` without the files it was initialised from.

    Weight-file options (:data:`INIT_ONLY_OPTIONS`) become ``None`` and a model's own
    ``rebuild_options`` (e.g. GRCSF's MAE architecture instead of its ``mae`` file) are
    merged in, so a card stays loadable when those files are gone. The run's
    ``config`` in the card still records where the initial weights came from.
    """
    out = dict(options)
    for key in INIT_ONLY_OPTIONS:
        if out.get(key) is not None:
            out[key] = None
    out.update(getattr(model, "rebuild_options", {}) or {})
    return out


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``state.pt`` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise MedattnIOError(path, "no resumable training state here (was the run started by `medattn train`?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MedattnIOError(path, f"cannot read training state ({type(exc).__name__}: {exc})") from exc
