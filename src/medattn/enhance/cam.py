"""Shared base of the class activation map methods (Grad-CAM, CAWE), in the spirit of pytorch-grad-cam.

A method reads one layer of a classifier: its feature maps ``F`` (B, K, h, w)
from a forward hook and the gradients of a *target* score with respect to
them. Targets are callables ``target(logits_row) -> scalar`` so any classifier
output (multi-label sigmoid, softmax, a single logit) can be explained; a
method only chooses the per-map weights (:meth:`BaseCAM.weights`). The map is
``ReLU(sum_k w_k F^k)``, bilinearly upsampled to the input size and min-max
normalised to [0, 1] per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError

Target = Callable[[torch.Tensor], torch.Tensor]


def find_layer(model: nn.Module, layer: nn.Module | str | None = None) -> nn.Module:
    """The layer to read: a module, a dotted name (``"encoder.layer4"``), or by default the model's
    ``cam_layer`` attribute, else its last ``nn.Conv2d`` (the last convolutional stage)."""
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-3:]
            raise ConfigError(f"model has no layer {layer!r} (last convolutions: {', '.join(names)})") from None
    cam_layer = getattr(model, "cam_layer", None)
    if isinstance(cam_layer, nn.Module):
        return cam_layer
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{type(model).__name__} has no convolution to read a class activation map from")
    return convs[-1]


def normalise(cam: torch.Tensor) -> torch.Tensor:
    """Min-max to [0, 1] per image of a (B, H, W) map; a constant map becomes all zeros.

    No absolute epsilon: a confident classifier (probability near 1) has tiny
    gradients, and its map must survive the scaling.
    """
    flat = cam.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (cam - lo) / safe, torch.zeros_like(cam))


class BaseCAM:
    """Hook a layer, backpropagate target scores, weight and sum its feature maps.

    Args:
        model: a classifier returning logits (B, C); put in eval mode.
        layer: see :func:`find_layer`.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None) -> None:
        self.model = model.eval()
        self.layer = find_layer(model, layer)

    def default_targets(self, logits: torch.Tensor) -> list[Target]:  # pragma: no cover - abstract
        raise NotImplementedError

    def weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Per-map weights (B, K) from the feature maps and their gradients (B, K, h, w)."""
        raise NotImplementedError

    def activations_and_grads(self, x: torch.Tensor, targets: Sequence[Target] | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feature maps, d(target score)/d(feature maps) and the logits for a batch ``x``."""
        store: dict[str, torch.Tensor] = {}

        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            store["a"] = out

        handle = self.layer.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                x = x.detach().clone().requires_grad_(True)  # a graph even when the weights are frozen
                logits = self.model(x)
                if logits.ndim != 2:
                    raise ConfigError(f"the classifier must return logits (B, C), got shape {tuple(logits.shape)}")
                targets = list(targets) if targets is not None else self.default_targets(logits.detach())
                if len(targets) == 1 and len(logits) > 1:
                    targets = targets * len(logits)
                if len(targets) != len(logits):
                    raise ValueError(f"{len(targets)} targets for a batch of {len(logits)}")
                # images are independent in eval mode, so one backward pass serves the whole batch
                score = torch.stack([t(row) for t, row in zip(targets, logits, strict=True)]).sum()
                if "a" not in store:
                    raise ConfigError("the chosen layer was not run by the model's forward pass")
                (grads,) = torch.autograd.grad(score, store["a"])
        finally:
            handle.remove()
        return store["a"].detach(), grads.detach(), logits.detach()

    def __call__(self, x: torch.Tensor, targets: Sequence[Target] | None = None) -> torch.Tensor:
        """Maps (B, H, W) in [0, 1] at the input's size for a batch ``x`` (B, C, H, W)."""
        acts, grads, _ = self.activations_and_grads(x, targets)
        w = self.weights(acts, grads)
        cam = torch.relu((w[:, :, None, None] * acts).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return normalise(cam)
