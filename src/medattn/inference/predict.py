"""Segmentation inference on arrays and files.

Images go through the same preprocessing as training
(:class:`medattn.data.SegmentationDataset`): uint8 -> [0, 1], resized
(bilinear, antialiased when shrinking) to the model's trained input size;
logits are resized back to the image size before the sigmoid, so the
probability map has the image's own size.

Test-time augmentation (``tta=True``) averages the logits of the
image and its horizontal and vertical flips; ``tta=None`` (the default)
means the model card's ``inference.tta`` (:attr:`LoadedModel.tta`).

Zoom (``zoom=z``, an integer >= 1; ``None``: the card's ``inference.zoom``; 1: off) also covers the
image with overlapping windows of side ``ceil(side / z)`` (:func:`zoom_windows`: 50 % overlap, ``2z - 1``
windows per axis, the last one flush with the edge), each resized to the input size and predicted
(batched, with TTA when on), their logits resized back and blended with Gaussian weights as MONAI's
``sliding_window_inference`` does (sigma = 1/8 of the window side), so a lesion ``z`` times too small
for the whole-frame pass is seen ``z`` times larger. :func:`fuse_zoom` then adds the lesions only the
zoom finds to the whole-frame map (at the card's threshold). Attention maps stay whole-frame.

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
from medattn.inference.loading import LoadedModel, check_zoom
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


#: share of a zoom window's side that its neighbours overlap
ZOOM_OVERLAP = 0.5
#: sigma of the Gaussian blending weights as a share of the window side (MONAI's ``sigma_scale``)
ZOOM_SIGMA = 0.125
#: zoom windows per forward pass (bounds memory on large frames)
ZOOM_BATCH = 16


def zoom_windows(size: tuple[int, int], zoom: int, overlap: float = ZOOM_OVERLAP) -> list[tuple[int, int, int, int]]:
    """``(top, left, height, width)`` windows of side ``ceil(side / zoom)`` that cover an image of ``size``.

    Neighbours overlap by ``overlap`` of the window side (at least), the first window starts at 0 and the
    last ends at the edge; ``zoom=1`` is the whole image.

    >>> zoom_windows((100, 60), 2)
    [(0, 0, 50, 30), (0, 15, 50, 30), (0, 30, 50, 30), (25, 0, 50, 30), (25, 15, 50, 30), (25, 30, 50, 30), (50, 0, 50, 30), (50, 15, 50, 30), (50, 30, 50, 30)]
    """
    starts = []
    for side in size:
        win = -(-side // zoom)
        stride = max(1.0, win * (1.0 - overlap))
        n = 1 if win >= side else int(np.ceil((side - win) / stride)) + 1
        starts.append([(round(i * (side - win) / (n - 1)) if n > 1 else 0, win) for i in range(n)])
    return [(t, left, h, w) for t, h in starts[0] for left, w in starts[1]]


def gaussian_weights(height: int, width: int, sigma: float = ZOOM_SIGMA) -> torch.Tensor:
    """(height, width) Gaussian blending weights peaking at the centre, positive everywhere (min 1e-4)."""
    axes = []
    for n in (height, width):
        r = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (r / max(sigma * n, 1e-6)) ** 2))
    return (axes[0][:, None] * axes[1][None, :]).clamp_min(1e-4)


def zoomed_logits(lm: LoadedModel, image: np.ndarray, zoom: int, tta: bool) -> torch.Tensor:
    """(1, K, H, W) logits of ``image`` from its :func:`zoom_windows`, Gaussian-blended at full resolution."""
    model = lm.model
    device = next(model.parameters()).device
    a = to_model_channels(image, lm.in_channels)
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    windows = zoom_windows(t.shape[1:], zoom)
    acc: torch.Tensor | None = None
    weight = torch.zeros(t.shape[1:], device=device)
    for start in range(0, len(windows), ZOOM_BATCH):
        chunk = windows[start: start + ZOOM_BATCH]
        x = torch.stack([_resize_image(t[:, y: y + h, x0: x0 + w], lm.input_size) for y, x0, h, w in chunk])
        logits = _forward(model, x.to(device), tta).float()
        if acc is None:
            acc = torch.zeros((1, logits.shape[1], *t.shape[1:]), device=device)
        for lg, (y, x0, h, w) in zip(logits, chunk, strict=True):
            g = gaussian_weights(h, w).to(device)
            lg = F.interpolate(lg[None], size=(h, w), mode="bilinear", align_corners=False)
            acc[..., y: y + h, x0: x0 + w] += lg * g
            weight[y: y + h, x0: x0 + w] += g
    assert acc is not None
    return acc / weight


def fuse_zoom(whole: torch.Tensor, zoomed: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """(H, W) foreground probability from the whole-frame and the zoomed (1, K, H, W) logits.

    The whole-frame map everywhere, plus the lesions only the zoom finds: the connected components
    (8-neighbourhood) of ``mean(whole, zoomed logits) > threshold`` that touch no pixel of the whole-frame
    mask take the mean map's probability. A lesion the whole frame found keeps the whole frame's
    outline: windows show a large lesion in parts and draw it worse, and the zoomed map alone (or
    its maximum with the whole frame) marks many folds and reflections as lesions
    (``benchmarks/results/small_lesions_zoom.md``; docs/training.md, "Small-lesion recall").
    """
    from scipy import ndimage

    pw = _foreground(whole)[0, 0].cpu().numpy()
    pm = _foreground((whole + zoomed) / 2)[0, 0].cpu().numpy()
    labels, n = ndimage.label(pm > threshold, structure=np.ones((3, 3)))
    if n == 0:
        return pw
    touched = np.unique(labels[(pw > threshold) & (labels > 0)])
    new = (labels > 0) & ~np.isin(labels, touched)
    out = pw.copy()
    out[new] = pm[new]
    return out


@torch.no_grad()
def predict_batch(lm: LoadedModel, images: list[np.ndarray], tta: bool | None = None,
                  zoom: int | None = None) -> list[Prediction]:
    """Predict a list of images (any sizes) in one forward pass (three with TTA), plus the zoom windows
    of each image when ``zoom`` > 1. ``tta`` / ``zoom`` None: the card's."""
    tta = lm.tta if tta is None else tta
    zoom = lm.zoom if zoom is None else check_zoom(zoom, "zoom")
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
        if zoom == 1:
            prob = _foreground(lg)[0, 0].cpu().numpy()
        else:
            prob = fuse_zoom(lg, zoomed_logits(lm, im, zoom, tta), lm.threshold)
        if att is not None:
            a = F.interpolate(att[i: i + 1, :1], size=size, mode="bilinear", align_corners=False)
            attention = _normalise(a)[0, 0].cpu().numpy()
        else:
            attention = prob
        preds.append(Prediction(prob.astype(np.float32), attention.astype(np.float32)))
    return preds


def predict_image(lm: LoadedModel, image: np.ndarray, tta: bool | None = None, zoom: int | None = None) -> Prediction:
    """Predict one image ((H, W) or (H, W, C), any dtype); ``tta`` / ``zoom`` None: the card's."""
    return predict_batch(lm, [image], tta=tta, zoom=zoom)[0]
