"""Training losses, registered by name.

>>> from medattn.losses import build_loss
>>> loss_fn = build_loss("bce_dice")           # EFEN, eq. 10-11 (theta = 1)
>>> sorted(list_losses())[:3]
['bce', 'bce_dice', 'dice']

Segmentation losses take logits ``(B, C, H, W)`` and a target of the same shape
in [0, 1]; restoration losses (``l1``, ``mse``, ``ssim``) take the network's
output and the clean image. :class:`DeepSupervisionLoss` applies any of them to a
list ``[main, aux_1, ...]`` of outputs (see :mod:`medattn.models.base`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError

_LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a loss builder (a class or a function returning an ``nn.Module``)."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        _LOSSES[name] = builder
        return builder

    return deco


def list_losses() -> list[str]:
    """Sorted names of the registered losses."""
    return sorted(_LOSSES)


def build_loss(name: str, **options: Any) -> nn.Module:
    """The loss registered as ``name``; a :class:`ConfigError` naming close matches if unknown."""
    try:
        builder = _LOSSES[name]
    except KeyError:
        close = difflib.get_close_matches(name, _LOSSES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown loss {name!r}{hint}; known: {', '.join(list_losses())}") from None
    try:
        return builder(**options)
    except TypeError as exc:
        raise ConfigError(f"loss {name!r}: {exc}") from exc


@register_loss("dice")
class DiceLoss(nn.Module):
    """Soft Dice loss on sigmoid (one class) or softmax (several) probabilities, per sample then averaged.

    ``L = 1 - (2 sum p g + smooth) / (sum p^a + sum g^a + smooth)`` with ``a = 2`` when
    ``squared`` (EFEN eq. 11 uses squares and ``smooth = theta = 1``), else ``a = 1``.
    Built on MONAI's ``DiceLoss``.
    """

    def __init__(self, smooth: float = 1.0, squared: bool = True) -> None:
        super().__init__()
        from monai.losses import DiceLoss as MonaiDice

        self.smooth = smooth
        self.squared = squared
        self._sigmoid = MonaiDice(sigmoid=True, squared_pred=squared, smooth_nr=smooth, smooth_dr=smooth)
        self._softmax = MonaiDice(softmax=True, squared_pred=squared, smooth_nr=smooth, smooth_dr=smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            return self._sigmoid(logits, target)
        return self._softmax(logits, _one_hot(target, logits.shape[1]))


def _one_hot(target: torch.Tensor, classes: int) -> torch.Tensor:
    """Class-index targets ``(B, 1, H, W)`` as one-hot; one-hot targets pass through."""
    if target.shape[1] == classes:
        return target
    return F.one_hot(target[:, 0].long(), classes).permute(0, 3, 1, 2).to(torch.float32)


@register_loss("bce")
class BCELoss(nn.Module):
    """Binary cross-entropy on logits (cross-entropy for several classes)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.cross_entropy(logits, _one_hot(target, logits.shape[1]))


@register_loss("bce_dice")
class BCEDiceLoss(nn.Module):
    """``L = BCE + dice_weight * Dice`` (EFEN, eq. 10; Dice of eq. 11 with theta = ``smooth`` = 1)."""

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, smooth: float = 1.0,
                 squared: bool = True) -> None:
        super().__init__()
        self.bce = BCELoss()
        self.dice = DiceLoss(smooth=smooth, squared=squared)
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce_weight * self.bce(logits, target) + self.dice_weight * self.dice(logits, target)


def box_mean(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Zero-padded mean over a ``kernel x kernel`` window (stride 1, same size), as two 1-D passes.

    Equals ``F.avg_pool2d(x, kernel, 1, kernel // 2, count_include_pad=True)`` to float rounding
    (about 1e-7) at ``2 kernel`` instead of ``kernel ** 2`` operations per pixel: 14x faster for
    PraNet's 31 x 31 window, which was half of a BSANet training step on CPU.
    """
    p = kernel // 2
    rows = F.avg_pool2d(x, (kernel, 1), stride=1, padding=(p, 0), count_include_pad=True)
    return F.avg_pool2d(rows, (1, kernel), stride=1, padding=(0, p), count_include_pad=True)


@register_loss("structure")
class StructureLoss(nn.Module):
    """PraNet's structure loss: weighted BCE + weighted IoU (Fan et al., MICCAI 2020, eq. 4).

    Pixels near the mask's boundary weigh more: ``w = 1 + 5 |avgpool_31(g) - g|``
    (zero-padded mean over a 31 x 31 window, :func:`box_mean`). Per sample
    ``wBCE = sum(w bce) / sum(w)`` and ``wIoU = 1 - (sum(w p g) + 1) / (sum(w (p + g)) - sum(w p g) + 1)``,
    averaged over the batch (and classes).
    """

    def __init__(self, kernel: int = 31, boundary_weight: float = 5.0) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        self.kernel = kernel
        self.boundary_weight = boundary_weight
        self._memo: tuple[torch.Tensor, int, torch.dtype, torch.Tensor] | None = None

    def weights(self, target: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``1 + 5 |avgpool_31(g) - g|``; remembered for the last target, so that the deep-supervision
        outputs of one batch (same target tensor, unchanged since) share one computation."""
        memo = self._memo
        if memo is not None and memo[0] is target and memo[1] == target._version and memo[2] == dtype:
            return memo[3]
        g = target.to(dtype)
        weit = 1 + self.boundary_weight * (box_mean(g, self.kernel) - g).abs()
        self._memo = (target, target._version, dtype, weit)
        return weit

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weit = self.weights(target, logits.dtype)
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        wbce = (weit * bce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
        pred = torch.sigmoid(logits)
        inter = (pred * target * weit).sum(dim=(2, 3))
        union = ((pred + target) * weit).sum(dim=(2, 3))
        wiou = 1 - (inter + 1) / (union - inter + 1)
        return (wbce + wiou).mean()


@register_loss("l1")
def l1_loss() -> nn.Module:
    """Mean absolute error (restoration / LDCT denoising)."""
    return nn.L1Loss()


@register_loss("mse")
def mse_loss() -> nn.Module:
    """Mean squared error (restoration / LDCT denoising)."""
    return nn.MSELoss()


@register_loss("ssim")
class SSIMLoss(nn.Module):
    """``1 - SSIM`` with an 11 x 11 Gaussian window (sigma 1.5) over valid positions (Wang et al., 2004).

    ``data_range`` is the value span of the images (1 for images in [0, 1]). MONAI's ``SSIMLoss``.
    """

    def __init__(self, data_range: float = 1.0, kernel_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        from monai.losses import SSIMLoss as MonaiSSIM

        self.data_range = data_range
        self.inner = MonaiSSIM(spatial_dims=2, data_range=data_range, kernel_type="gaussian",
                               win_size=kernel_size, kernel_sigma=sigma)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.inner(output.float(), target.float())


def aux_weights(spec: str | Sequence[float], count: int) -> list[float]:
    """Weights of ``count`` auxiliary outputs: ``"halving"`` (0.5, 0.25, ...), ``"equal"`` (1, 1, ...),
    ``"none"`` (0, ...) or an explicit list (the last value repeats if the list is short)."""
    if isinstance(spec, str):
        if spec == "halving":
            return [0.5 ** (k + 1) for k in range(count)]
        if spec == "equal":
            return [1.0] * count
        if spec == "none":
            return [0.0] * count
        raise ConfigError(f"deep supervision weights {spec!r}: use halving, equal, none or a list of numbers")
    values = [float(v) for v in spec]
    if not values:
        return [0.0] * count
    return [values[min(k, len(values) - 1)] for k in range(count)]


class DeepSupervisionLoss(nn.Module):
    """``L = loss(main) + sum_k w_k loss(aux_k)`` for a list ``[main, aux_1, ...]`` of outputs.

    A single tensor is scored by ``loss`` alone. ``normalize`` divides by ``1 + sum w_k``
    so the scale does not depend on the number of auxiliary outputs.
    """

    def __init__(self, loss: nn.Module, weights: str | Sequence[float] = "halving", normalize: bool = False) -> None:
        super().__init__()
        self.loss = loss
        self.weights = weights
        self.normalize = normalize

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        main, *aux = outputs
        total = self.loss(main, target)
        ws = aux_weights(self.weights, len(aux))
        for w, out in zip(ws, aux, strict=True):
            if w:
                total = total + w * self.loss(out, target)
        if self.normalize:
            total = total / (1.0 + sum(ws))
        return total


__all__ = [
    "BCEDiceLoss",
    "BCELoss",
    "DeepSupervisionLoss",
    "DiceLoss",
    "SSIMLoss",
    "StructureLoss",
    "aux_weights",
    "box_mean",
    "build_loss",
    "list_losses",
    "register_loss",
]
