"""Datasets: layout discovery, checks, splits, augmentation and torch datasets.

Torch and MONAI are imported only by :mod:`medattn.data.transforms` and
:mod:`medattn.data.datasets`; their names are loaded on first use here.
"""

from __future__ import annotations

import importlib
from typing import Any

from medattn.data.layouts import LAYOUTS, detect_layout, discover, load_kvasir_boxes
from medattn.data.splits import (
    evaluation_samples,
    folder_split,
    kfold_split,
    listed_samples,
    load_split,
    pranet_split,
    ratio_split,
    save_split,
)
from medattn.data.types import DatasetIndex, Sample

_LAZY = {
    "check_dataset": "medattn.data.check",
    "CheckReport": "medattn.data.check",
    "build_transforms": "medattn.data.transforms",
    "TRANSFORMS": "medattn.data.transforms",
    "SegmentationDataset": "medattn.data.datasets",
    "UnlabeledDataset": "medattn.data.datasets",
    "read_sample_mask": "medattn.data.datasets",
    "worker_init_fn": "medattn.data.datasets",
}

__all__ = [
    "LAYOUTS",
    "TRANSFORMS",
    "CheckReport",
    "DatasetIndex",
    "Sample",
    "SegmentationDataset",
    "UnlabeledDataset",
    "build_transforms",
    "check_dataset",
    "detect_layout",
    "discover",
    "evaluation_samples",
    "folder_split",
    "kfold_split",
    "listed_samples",
    "load_kvasir_boxes",
    "load_split",
    "pranet_split",
    "ratio_split",
    "read_sample_mask",
    "save_split",
    "worker_init_fn",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medattn.data' has no attribute '{name}'")
