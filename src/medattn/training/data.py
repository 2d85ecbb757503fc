"""Dataset builders: turn the config's ``data`` section into train / val datasets.

The builder is chosen by ``data.kind`` (default ``segmentation``). Other tasks add their
own without touching the trainer::

    from medattn.training.data import DataBundle, register_dataset_builder

    @register_dataset_builder("ldct")
    def build_ldct(cfg: Config) -> DataBundle:
        ...  # datasets yielding {"image": noisy (1,H,W), "target": clean (1,H,W), "id": str}
        return DataBundle(train=train_ds, val=val_ds, target_key="target")

The module defining the builder must be imported before training; ``data.kind`` may
also be an import path ``"package.module:function"``, which is imported on demand.
The package's own builders outside this module (:data:`BUILTIN_BUILDERS`, e.g. ``ldct``)
are imported on first use.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medattn.errors import ConfigError, DatasetError
from medattn.training.config import Config


@dataclass
class DataBundle:
    """What a builder returns.

    Attributes:
        train: torch Dataset of dicts with ``"image"``, the target under ``target_key`` and ``"id"``.
        val: validation Dataset (or None: no validation, best = last).
        target_key: key of the training target in the items (``mask`` / ``target``).
        split: the sample lists per part (saved as ``split.json`` in the run, read by ``medattn evaluate --split``).
        val_batch_size: validation batch (None = ``train.batch_size``); 1 for items of different sizes.
        scores: per-sample validation scores ``(outputs, target) -> {name: (N,) tensor}`` replacing
            the task's default (``val_`` is prefixed), e.g. PSNR in a CT window.
        input_size: ``(H, W)`` the items come at, when the data set fixes it (LDCT patches): the engine
            trains at it instead of ``data.input_size`` and records it in the cards (None = ``data.input_size``).
        card: extra fields for the checkpoint cards (e.g. the intensity normalisation).
    """

    train: Any
    val: Any | None = None
    target_key: str = "mask"
    split: dict[str, list[Any]] = field(default_factory=dict)
    val_batch_size: int | None = None
    scores: Callable[[Any, Any], dict[str, Any]] | None = None
    input_size: tuple[int, int] | None = None
    card: dict[str, Any] = field(default_factory=dict)


_BUILDERS: dict[str, Callable[[Config], DataBundle]] = {}

#: builders of other medattn modules, imported when first asked for
BUILTIN_BUILDERS = {"ldct": "medattn.denoise.data:build_ldct"}


def register_dataset_builder(kind: str) -> Callable[[Callable[[Config], DataBundle]], Callable[[Config], DataBundle]]:
    """Decorator registering ``builder(cfg) -> DataBundle`` for ``data.kind = kind``."""

    def deco(builder: Callable[[Config], DataBundle]) -> Callable[[Config], DataBundle]:
        _BUILDERS[kind] = builder
        return builder

    return deco


def get_dataset_builder(kind: str) -> Callable[[Config], DataBundle]:
    """The builder registered as ``kind``, or the function named by ``"module:function"``."""
    if kind in _BUILDERS:
        return _BUILDERS[kind]
    kind = BUILTIN_BUILDERS.get(kind, kind)
    if ":" in kind:
        module, _, attr = kind.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"data.kind: cannot import {kind!r} ({exc})") from None
    known = sorted({*_BUILDERS, *BUILTIN_BUILDERS})
    close = difflib.get_close_matches(kind, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"data.kind: unknown dataset kind {kind!r}{hint}; known: {', '.join(known)} "
                      "or 'package.module:function'")


def _carve_val(train: list[Any], ratio: float, seed: int) -> tuple[list[Any], list[Any]]:
    from medattn.data import ratio_split

    if ratio <= 0 or len(train) < 2:
        return train, []
    parts = ratio_split(train, (1.0 - ratio, ratio), seed=seed)
    return parts["train"], parts["val"]


def segmentation_split(cfg: Config) -> dict[str, list[Any]]:
    """Sample lists ``{"train", "val", ["test..."]}`` for the config's split."""
    from medattn.data import discover, kfold_split, load_split, pranet_split, ratio_split

    sc = cfg.data.split
    if sc.kind == "pranet":
        if len(cfg.data.root) != 1:
            raise ConfigError("data.root: the pranet split takes one data root (holding kvasir-seg, cvc-clinicdb, "
                              "splits)")
        parts = pranet_split(cfg.data.root[0])
    elif sc.kind == "file":
        parts = load_split(sc.file)
    else:
        samples = []
        for root in cfg.data.root:
            index = discover(root, layout=cfg.data.layout)
            samples += [s for s in index.samples if s.mask is not None or s.extra_masks]
        if not samples:
            raise DatasetError(f"data.root: no image/mask pairs found in {', '.join(map(str, cfg.data.root))}")
        if sc.kind == "ratio":
            parts = ratio_split(samples, sc.ratios, seed=sc.seed)
        elif sc.kind == "kfold":
            parts = kfold_split(samples, sc.k, seed=sc.seed)[sc.fold]
        else:
            parts = {"train": samples}
    if "train" not in parts or not parts["train"]:
        raise DatasetError(f"data.split: the {sc.kind} split has no training samples")
    parts = dict(parts)
    if not parts.get("val"):
        parts["train"], parts["val"] = _carve_val(parts["train"], sc.val_ratio, sc.seed)
    if cfg.data.limit is not None:
        parts["train"] = parts["train"][: cfg.data.limit]
        parts["val"] = parts["val"][: cfg.data.limit]
    return {k: v for k, v in parts.items() if v}


@register_dataset_builder("segmentation")
def build_segmentation(cfg: Config) -> DataBundle:
    """Image/mask pairs through :class:`medattn.data.SegmentationDataset` with the named augmentations."""
    from medattn.data import SegmentationDataset, build_transforms

    parts = segmentation_split(cfg)
    size = tuple(cfg.data.input_size)
    train_tf = build_transforms(cfg.data.augment, size, train=True) if cfg.data.augment else None
    common = {"size": size, "in_channels": cfg.data.in_channels, "cache": cfg.data.cache,
              "cache_dir": cfg.data.cache_dir}
    train = SegmentationDataset(parts["train"], transforms=train_tf, **common)
    train.prepare(description="caching training images")
    val = None
    if parts.get("val"):
        val = SegmentationDataset(parts["val"], transforms=None, **common)
        val.prepare(description="caching validation images")
    return DataBundle(train=train, val=val, target_key="mask", split=parts)
