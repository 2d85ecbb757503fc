"""CAWE: class-aware attention weight extraction (seed paper 002, sec. 3.1, eqs. 1-2).

    w_k    = 1/(h w) sum_ij ReLU( d(sum_l sigma_l) / dF^k_ij )        (eq. 1)
    L_CAWE = ReLU( sum_k w_k F^k )                                    (eq. 2)

``sigma_l`` are the probabilities of the *activated* classes (sigmoid output
above ``threshold``); the map is then bilinearly upsampled to the image size
and normalised to [0, 1]. When no class is activated (an image the classifier
calls lesion-free) the most probable class is used, so every image gets a map
(:attr:`CAWE.last_activated` tells which case applied).

Relation to Grad-CAM (Selvaraju et al., ICCV 2017): with a single activated
class ``c``, ``d sigma_c / dF = sigma_c (1 - sigma_c) dy_c / dF`` is a positive
multiple of Grad-CAM's logit gradient, which the normalisation removes; the two
maps are then identical wherever those gradients are non-negative (e.g. a
global-average-pooling head with non-negative class weights). Eq. 1's ReLU on
the gradients is the only difference otherwise: negative evidence is dropped
before averaging rather than after weighting.
"""

from __future__ import annotations

import torch

from medattn.enhance.cam import BaseCAM, Target


class ActivatedClasses:
    """Target: sum of the probabilities of the classes activated in this image (eq. 1's ``sum_l sigma_l``).

    Args:
        classes: indices of the activated classes.
        activation: ``"sigmoid"`` (multi-label, the paper's setting) or ``"softmax"``.
    """

    def __init__(self, classes: list[int], activation: str = "sigmoid") -> None:
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
        self.classes, self.activation = list(classes), activation

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        # float64: in float32 sigmoid(17+) is exactly 1, and a confident class would get zero gradient
        logits = logits.double()
        probs = torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=-1)
        return probs[self.classes].sum()


class CAWE(BaseCAM):
    """Class-aware attention weights of eqs. 1-2 for any classifier returning logits.

    >>> cawe = CAWE(model)                     # doctest: +SKIP
    >>> maps = cawe(images)                    # (B, H, W) in [0, 1]   # doctest: +SKIP

    Args:
        model: classifier returning logits (B, C).
        layer: layer to read (default: the last convolutional stage).
        threshold: probability above which a class counts as activated.
        activation: ``"sigmoid"`` (independent classes) or ``"softmax"``.
    """

    def __init__(self, model: torch.nn.Module, layer: torch.nn.Module | str | None = None, threshold: float = 0.5,
                 activation: str = "sigmoid") -> None:
        super().__init__(model, layer)
        self.threshold, self.activation = threshold, activation
        self.last_activated: list[list[int]] = []

    def default_targets(self, logits: torch.Tensor) -> list[Target]:
        probs = torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=-1)
        self.last_activated = []
        targets: list[Target] = []
        for row in probs:
            active = torch.nonzero(row > self.threshold).flatten().tolist()
            self.last_activated.append(active)
            targets.append(ActivatedClasses(active or [int(row.argmax())], self.activation))
        return targets

    def weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return torch.relu(grads).mean(dim=(2, 3))  # eq. 1


def cawe_map(model: torch.nn.Module, x: torch.Tensor, layer: torch.nn.Module | str | None = None,
             threshold: float = 0.5) -> torch.Tensor:
    """One-call form: CAWE maps (B, H, W) in [0, 1] for images ``x`` (B, C, H, W)."""
    return CAWE(model, layer, threshold)(x)
