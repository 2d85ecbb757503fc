"""Encoder registry: every backbone shares :class:`~medattn.models.encoders.base.Encoder`.

>>> from medattn.models.encoders import create_encoder
>>> enc = create_encoder("resnet34", in_channels=3)          # doctest: +SKIP
>>> enc.out_channels, enc.reductions                          # doctest: +SKIP
([64, 64, 128, 256, 512], [2, 4, 8, 16, 32])
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import torch

from medattn.errors import ConfigError
from medattn.models.encoders.base import Encoder, load_state_dict_file

_ENCODERS: dict[str, Callable[..., Encoder]] = {}


def register_encoder(name: str) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    """Decorator registering an encoder builder ``builder(in_channels=3, **kw) -> Encoder``."""

    def deco(fn: Callable[..., Encoder]) -> Callable[..., Encoder]:
        if name in _ENCODERS:
            raise ValueError(f"encoder {name!r} is registered twice")
        _ENCODERS[name] = fn
        return fn

    return deco


def list_encoders(pattern: str = "*") -> list[str]:
    return sorted(n for n in _ENCODERS if fnmatch.fnmatch(n, pattern))


# Input statistics the ImageNet weights were trained with (torchvision / timm).
INPUT_NORMS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _normalize_input(module: Encoder, args: tuple) -> tuple:
    return ((args[0] - module.input_mean) / module.input_std, *args[1:])


def add_input_normalization(enc: Encoder, norm: str, in_channels: int) -> Encoder:
    """Standardise the encoder's [0, 1] input with ``norm``'s mean/std inside ``forward``.

    The statistics are non-persistent buffers applied by a forward pre-hook, so
    checkpoint keys do not change; the option travels in the model's options
    (model cards), so a reloaded model normalises exactly as in training. A
    1-channel encoder uses the mean of the three channels' statistics.
    """
    if norm not in INPUT_NORMS:
        raise ConfigError(f"unknown input normalization {norm!r}; available: {', '.join(INPUT_NORMS)}")
    mean, std = (torch.tensor(v) for v in INPUT_NORMS[norm])
    if in_channels == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    elif in_channels != 3:
        raise ConfigError(f"input normalization {norm!r} needs 1 or 3 input channels, got {in_channels}")
    enc.register_buffer("input_mean", mean.view(1, -1, 1, 1), persistent=False)
    enc.register_buffer("input_std", std.view(1, -1, 1, 1), persistent=False)
    enc.register_forward_pre_hook(_normalize_input)
    return enc


def create_encoder(name: str, in_channels: int = 3, pretrained: str | None = None, normalize: str | None = None,
                   **kwargs: Any) -> Encoder:
    """Build encoder ``name``.

    Args:
        pretrained: a local weights file (torchvision/timm layout).
        normalize: ``"imagenet"`` standardises the [0, 1] input with ImageNet's
            mean/std inside the encoder (use it with ImageNet weights).
    """
    if name not in _ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; available: {', '.join(list_encoders())}")
    enc = _ENCODERS[name](in_channels=in_channels, **kwargs)
    if pretrained:
        enc.load_pretrained(pretrained)
    if normalize:
        add_input_normalization(enc, normalize, in_channels)
    return enc


def _import_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


_import_all()

__all__ = ["Encoder", "create_encoder", "list_encoders", "load_state_dict_file", "register_encoder"]
