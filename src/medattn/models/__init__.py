"""The model zoo: one registry for every network.

>>> from medattn.models import create, list_models
>>> net = create("unet", in_channels=3, num_classes=1)       # doctest: +SKIP

Every module in this package (and in ``encoders/``) is imported here, so
registering a model is only a matter of decorating its builder with
:func:`register_model` in a new file.
"""

from __future__ import annotations

import importlib
import pkgutil

from medattn.models.base import SegmentationModel
from medattn.models.registry import ModelInfo, create, list_models, model_info, register_model

_SKIP = {"base", "registry", "encoders", "blocks"}


def _import_all() -> None:
    importlib.import_module(f"{__name__}.encoders")
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in _SKIP and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_import_all()

__all__ = ["ModelInfo", "SegmentationModel", "create", "list_models", "model_info", "register_model"]
