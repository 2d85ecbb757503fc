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


def create_encoder(name: str, in_channels: int = 3, pretrained: str | None = None, **kwargs: Any) -> Encoder:
    """Build encoder ``name``; ``pretrained`` is a local weights file (torchvision/timm layout)."""
    if name not in _ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; available: {', '.join(list_encoders())}")
    enc = _ENCODERS[name](in_channels=in_channels, **kwargs)
    if pretrained:
        enc.load_pretrained(pretrained)
    return enc


def _import_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")


_import_all()

__all__ = ["Encoder", "create_encoder", "list_encoders", "load_state_dict_file", "register_encoder"]
