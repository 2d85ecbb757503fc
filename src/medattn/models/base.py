"""Base class shared by every segmentation network in the zoo.

:class:`SegmentationModel` gives all architectures the same contract, as
segmentation_models_pytorch's base does:

* input ``(B, C, H, W)`` with ``C == in_channels`` (1 or 3); any ``H, W``:
  the input is padded (reflect) to a multiple of :attr:`stride` and the
  logits are cropped back;
* output: logits ``(B, num_classes, H, W)`` (binary segmentation is
  ``num_classes=1``, to be read through a sigmoid; multi-class through softmax);
* in training mode with ``deep_supervision=True`` a list
  ``[main, aux_1, ...]`` of logits (aux ones upsampled to ``H, W``); in eval
  mode always the main logits tensor alone;
* :meth:`predict` returns probabilities in eval mode without gradients.

Subclasses implement :meth:`forward_logits` on a padded input and return the
main logits or ``(main, [aux...])`` at any resolution (they are resized).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationModel(nn.Module):
    """Common input/output handling for segmentation networks.

    Args:
        in_channels: image channels (1 for grayscale, 3 for RGB).
        num_classes: output channels (1 = binary with sigmoid).
        stride: total down-sampling factor; inputs are padded to a multiple of it.
        deep_supervision: return auxiliary outputs in training mode.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, stride: int = 32,
                 deep_supervision: bool = False) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.stride = stride
        self.deep_supervision = deep_supervision

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects (B, C, H, W) input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_channels} input channel(s), got {x.shape[1]}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._check_input(x)
        h, w = x.shape[-2:]
        ph = (-h) % self.stride
        pw = (-w) % self.stride
        if ph or pw:
            # reflect needs pad < size; fall back to replicate for tiny inputs
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        out = self.forward_logits(x)
        main, aux = (out if isinstance(out, tuple) else (out, []))
        main = self._fit(main, h, w, x.shape[-2:])
        if self.training and self.deep_supervision and aux:
            return [main, *(self._fit(a, h, w, x.shape[-2:]) for a in aux)]
        return main

    @staticmethod
    def _fit(t: torch.Tensor, h: int, w: int, padded: torch.Size) -> torch.Tensor:
        if t.shape[-2:] != padded:
            t = F.interpolate(t, size=tuple(padded), mode="bilinear", align_corners=False)
        return t[..., :h, :w]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (sigmoid for one class, softmax otherwise) in eval mode."""
        was_training = self.training
        self.eval()
        try:
            logits = self(x)
        finally:
            self.train(was_training)
        return torch.sigmoid(logits) if self.num_classes == 1 else torch.softmax(logits, dim=1)
