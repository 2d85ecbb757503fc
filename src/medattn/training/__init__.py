"""Training engine: typed config, dataset builders, optimisers, the loop, checkpoints, DDP.

>>> from medattn.training import load_config, train                          # doctest: +SKIP
>>> result = train(load_config("configs/smoke.yaml", ["train.epochs=2"]))     # doctest: +SKIP
>>> result.run_dir / "best.safetensors"                                       # doctest: +SKIP

Torch is imported only when the loop or its parts are first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from medattn.training.config import Config, load_config, save_config

_LAZY = {
    "Trainer": "medattn.training.trainer",
    "TrainResult": "medattn.training.trainer",
    "train": "medattn.training.trainer",
    "build_optimizer": "medattn.training.optim",
    "build_scheduler": "medattn.training.optim",
    "save_checkpoint": "medattn.training.checkpoint",
    "DataBundle": "medattn.training.data",
    "register_dataset_builder": "medattn.training.data",
}

__all__ = [
    "Config",
    "DataBundle",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "load_config",
    "register_dataset_builder",
    "save_checkpoint",
    "save_config",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medattn.training' has no attribute '{name}'")
