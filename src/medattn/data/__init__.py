"""Datasets: layout discovery, checks, splits, augmentation and torch datasets.

Torch and MONAI are imported only by :mod:`medattn.data.transforms` and
:mod:`medattn.data.datasets`; their names are loaded on first use here.
"""

from __future__ import annotations

import importlib
from typing import Any

from medattn.data.layouts import LAYOUTS, detect_layout, discover, load_kvasir_boxes
from medattn.data.splits import kfold_split, load_split, pranet_split, ratio_split, save_split
from medattn.data.types import DatasetIndex, Sample

_LAZY: dict[str, str] = {}

__all__ = [
    "LAYOUTS",
    "DatasetIndex",
    "Sample",
    "detect_layout",
    "discover",
    "kfold_split",
    "load_kvasir_boxes",
    "load_split",
    "pranet_split",
    "ratio_split",
    "save_split",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medattn.data' has no attribute '{name}'")
