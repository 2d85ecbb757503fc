"""The one feature interface every encoder shares.

An :class:`Encoder` maps ``(B, C, H, W)`` to a list of feature maps, finest
first, with ``out_channels[i]`` channels at stride ``reductions[i]`` (for a
ResNet: strides 2, 4, 8, 16, 32). Any decoder in the zoo can sit on any
encoder through this interface (timm's ``features_only`` / smp's encoders).

Pretrained weights come from a *local file* in torchvision or timm key
layout: ``encoder.load_pretrained(path)`` maps foreign keys with the
encoder's :meth:`Encoder.remap_state_dict` and raises a :class:`ConfigError`
that lists missing / unexpected keys when the file does not fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from medattn.errors import ConfigError, MedattnIOError


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors``.

    Wrapped checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MedattnIOError(path, "pretrained weights file not found")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated file
        raise MedattnIOError(path, f"cannot read weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping):
        raise MedattnIOError(path, "file does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


class Encoder(nn.Module):
    """Base class: multi-scale feature extractor.

    Subclasses set :attr:`out_channels` and :attr:`reductions` and implement
    :meth:`forward` returning ``len(out_channels)`` tensors, finest first.
    """

    out_channels: list[int]
    reductions: list[int]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def stride(self) -> int:
        return max(self.reductions)

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a foreign (torchvision / timm) state dict onto this module's keys.

        The default drops classifier heads (``fc.``, ``classifier.``, ``head.``)
        and keeps the rest unchanged; encoders with another layout override it.
        """
        heads = ("fc.", "classifier.", "head.", "last_linear.")
        return {k: v for k, v in state_dict.items() if not k.startswith(heads)}

    def load_pretrained(self, path: str | os.PathLike[str], strict: bool = True) -> None:
        """Load ImageNet (or self-supervised) weights from a local file."""
        sd = self.remap_state_dict(load_state_dict_file(path))
        own = self.state_dict()
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        mismatched = [k for k in sd if k in own and sd[k].shape != own[k].shape]
        # A 1-channel model takes a 3-channel stem by summing over input channels.
        fixed = {}
        for k in mismatched:
            src, dst = sd[k], own[k]
            if src.ndim == 4 and dst.ndim == 4 and src.shape[0] == dst.shape[0] and dst.shape[1] == 1:
                fixed[k] = src.sum(dim=1, keepdim=True)
        mismatched = [k for k in mismatched if k not in fixed]
        sd.update(fixed)
        if strict and (missing or unexpected or mismatched):
            def show(keys: list[str]) -> str:
                return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

            parts = []
            if missing:
                parts.append(f"{len(missing)} missing keys: {show(missing)}")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
            if mismatched:
                parts.append(f"{len(mismatched)} shape mismatches: {show(mismatched)}")
            raise ConfigError(
                f"{os.fspath(path)}: weights do not fit {type(self).__name__}: " + "; ".join(parts)
            )
        self.load_state_dict({k: v for k, v in sd.items() if k in own and k not in mismatched}, strict=False)
