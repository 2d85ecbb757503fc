"""Segmentation inference on arrays and files.

Images go through the same preprocessing as training
(:class:`medattn.data.SegmentationDataset`): uint8 -> [0, 1], resized
(bilinear, antialiased when shrinking) to the model's trained input size;
logits are resized back to the image size before the sigmoid, so the
probability map has the image's own size.

Test-time augmentation (``tta=True``) averages the logits of the
image and its horizontal and vertical flips; ``tta=None`` (the default)
means the model card's ``inference.tta`` (:attr:`LoadedModel.tta`).

The *attention map* of a prediction comes from the model's
``attention_map(x) -> (B, 1, h, w)`` method when it has one (model authors:
return the module's spatial attention, any resolution, any range; it is
resized and min-max normalised here), else it is the probability map itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medattn.data.datasets import _resize_image
from medattn.inference.loading import LoadedModel
from medattn.io import rgb_plus_gray, rgb_to_gray


@dataclass
class Prediction:
    """Probability map (H, W) in [0, 1] and attention map (H, W) in [0, 1] at the image size."""

    prob: np.ndarray
    attention: np.ndarray


def to_model_channels(image: np.ndarray, in_channels: int) -> np.ndarray:
    """uint8 (H, W) / (H, W, C) -> uint8 (H, W, in_channels); 4 = RGB + luminance (HLF-Net's input)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        from medattn.inference.render import to_rgb8

        a = to_rgb8(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] == 4:
        a = a[..., :3]
    if in_channels == 1 and a.shape[2] == 3:
        a = rgb_to_gray(a)[..., None]
    elif in_channels in (3, 4) and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if in_channels == 4:
        a = rgb_plus_gray(a)
    return a


def _batch(images: list[np.ndarray], lm: LoadedModel) -> torch.Tensor:
    xs = []
    for im in images:
        a = to_model_channels(im, lm.in_channels)
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
        xs.append(_resize_image(t, lm.input_size))
    return torch.stack(xs)


def _foreground(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) logits -> (B, 1, h, w) foreground probability (K > 1: 1 - p(background))."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return 1.0 - torch.softmax(logits, dim=1)[:, :1]


def _forward(model: Any, x: torch.Tensor, tta: bool) -> torch.Tensor:
    out = model(x)
    logits = out[0] if isinstance(out, (list, tuple)) else out
    if not tta:
        return logits
    # average in logit space keeps the sigmoid/softmax of the mean well defined
    total = logits.clone()
    for dims in ((3,), (2,)):
        o = model(torch.flip(x, dims))
        o = o[0] if isinstance(o, (list, tuple)) else o
        total += torch.flip(o, dims)
    return total / 3


def _normalise(a: torch.Tensor) -> torch.Tensor:
    lo = a.amin(dim=(-2, -1), keepdim=True)
    hi = a.amax(dim=(-2, -1), keepdim=True)
    return (a - lo) / (hi - lo).clamp_min(1e-8)


@torch.no_grad()
def predict_batch(lm: LoadedModel, images: list[np.ndarray], tta: bool | None = None) -> list[Prediction]:
    """Predict a list of images (any sizes) in one forward pass (three with TTA; None: the card's)."""
    tta = lm.tta if tta is None else tta
    model = lm.model
    model.eval()
    x = _batch(images, lm).to(next(model.parameters()).device)
    logits = _forward(model, x, tta).float()
    att_fn = getattr(model, "attention_map", None)
    att = att_fn(x).float() if callable(att_fn) else None
    preds = []
    for i, im in enumerate(images):
        size = im.shape[:2]
        lg = F.interpolate(logits[i: i + 1], size=size, mode="bilinear", align_corners=False)
        prob = _foreground(lg)[0, 0]
        if att is not None:
            a = F.interpolate(att[i: i + 1, :1], size=size, mode="bilinear", align_corners=False)
            attention = _normalise(a)[0, 0]
        else:
            attention = prob
        preds.append(Prediction(prob.cpu().numpy().astype(np.float32), attention.cpu().numpy().astype(np.float32)))
    return preds


def predict_image(lm: LoadedModel, image: np.ndarray, tta: bool | None = None) -> Prediction:
    """Predict one image ((H, W) or (H, W, C), any dtype); ``tta=None``: the card's."""
    return predict_batch(lm, [image], tta=tta)[0]
