"""Grad-CAM (Selvaraju et al., ICCV 2017): the single-class reference CAWE is compared with.

    alpha_k^c = 1/(h w) sum_ij dy^c / dF^k_ij,   L^c = ReLU(sum_k alpha_k^c F^k)

``y^c`` is the class *logit* (before sigmoid / softmax); by default the top class.
"""

from __future__ import annotations

import torch

from medattn.enhance.cam import BaseCAM, Target


class ClassLogit:
    """Target: the logit of one class."""

    def __init__(self, index: int) -> None:
        self.index = int(index)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[self.index]


class GradCAM(BaseCAM):
    """Grad-CAM maps (B, H, W) in [0, 1]; targets default to each image's top class."""

    def default_targets(self, logits: torch.Tensor) -> list[Target]:
        return [ClassLogit(int(row.argmax())) for row in logits]

    def weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3))
