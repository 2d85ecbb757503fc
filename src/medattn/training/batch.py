"""Batch-level resizing for multi-scale training and progressive resizing (``train.multi_scale``,
``train.progressive``).

The dataset yields batches at ``data.input_size``; the trainer rescales a whole batch at once
(one ``F.interpolate`` call, no per-sample Python work): the image bilinearly (antialiased when
shrinking), a one-channel binary target bilinearly too (a soft target, as PraNet rescales its
masks), class-index targets by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def scaled_size(size: Sequence[int], scale: float, multiple: int = 32) -> tuple[int, int]:
    """``size`` times ``scale``, each side rounded to a multiple of ``multiple`` (at least one multiple).

    >>> scaled_size((352, 352), 0.75)
    (256, 256)
    >>> scaled_size((352, 352), 1.25)
    (448, 448)
    """
    return tuple(max(multiple, round(s * scale / multiple) * multiple) for s in size)  # type: ignore[return-value]


def stage_size(stages: Sequence[object], epoch: int, final: Sequence[int]) -> tuple[int, int]:
    """The training input size of ``epoch`` (0-based) under progressive ``stages`` (``.epochs``, ``.size``)."""
    start = 0
    for stage in stages:
        start += stage.epochs  # type: ignore[attr-defined]
        if epoch < start:
            return tuple(stage.size)  # type: ignore[attr-defined,return-value]
    return tuple(final)  # type: ignore[return-value]


def resize_batch(image: torch.Tensor, target: torch.Tensor, size: Sequence[int],
                 soft_target: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, H, W)`` image and ``(B, K, H, W)`` target resized to ``size`` (unchanged if equal).

    ``soft_target``: bilinear for a floating-point target (binary masks become soft at edges, images
    stay images); else nearest. Values are not clipped: bilinear weights (antialiased too) are
    non-negative and sum to one, so masks stay in [0, 1] and HU images keep their range.
    The memory format (channels-last) of ``image`` is kept.
    """
    size = tuple(int(s) for s in size)
    if tuple(image.shape[-2:]) == size:
        return image, target
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    channels_last = image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
    x = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if soft_target and target.is_floating_point():
        y = F.interpolate(target, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    else:
        y = F.interpolate(target.float(), size=size, mode="nearest-exact").to(target.dtype)
    return x, y
