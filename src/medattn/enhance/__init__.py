"""Lesion-detection enhancement (seed paper 002): CAWE attention, colorization GAN, eq. 7 fusion.

>>> from medattn.enhance import enhance_image                          # doctest: +SKIP
>>> out = enhance_image(gray, "runs/cawe", colorizer="runs/colorizer")   # doctest: +SKIP
>>> out["heatmap"].shape == gray.shape, out["fused"].dtype              # doctest: +SKIP
(True, dtype('uint8'))

Modules: :mod:`~medattn.enhance.cam` (shared CAM base), :mod:`~medattn.enhance.cawe`
(eqs. 1-2), :mod:`~medattn.enhance.gradcam`, :mod:`~medattn.enhance.fusion` (eq. 7),
:mod:`~medattn.enhance.classifier` (weak labels, training, pointing game),
:mod:`~medattn.enhance.colorize` (eqs. 3-6), :mod:`~medattn.enhance.detection`
(RetinaNet + FROC). Torch is imported on first use.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from medattn.enhance.fusion import fuse

CLASSIFIER_MODEL = "lesion_classifier"
COLORIZER_MODEL = "colorizer"
#: When :func:`enhance_image` runs the colorizer: ``auto`` only on grayscale inputs (the paper's setting:
#: CT, X-ray, gray endoscopy; colour inputs keep their own colours), ``always`` on every input, ``never``.
COLORIZE_MODES = ("auto", "always", "never")


def _check_colorize(mode: str, what: str = "colorize") -> None:
    """:class:`~medattn.errors.ConfigError` naming ``what`` unless ``mode`` is one of :data:`COLORIZE_MODES`."""
    if mode not in COLORIZE_MODES:
        from medattn.errors import ConfigError

        raise ConfigError(f"{what} must be one of {', '.join(COLORIZE_MODES)}, got {mode!r}")


def _bundled_with(model: str) -> list[str]:
    from medattn.models import hub

    names = []
    for path in sorted(hub.WEIGHTS_DIR.glob("*.safetensors")):
        try:
            card = hub.model_card(path)
        except Exception:  # an unreadable card is not an enhancement model
            continue
        if card.get("model") == model:
            names.append(path.stem)
    return names


def available_models() -> list[str]:
    """Names of the bundled lesion classifiers CAWE can use (for ``medattn enhance --model`` and the web app)."""
    return _bundled_with(CLASSIFIER_MODEL)


def available_colorizers() -> list[str]:
    """Names of the bundled colorization generators."""
    return _bundled_with(COLORIZER_MODEL)


def default_colorizer() -> str | None:
    """The bundled colorizer ``medattn enhance`` uses when none is named: the first one, or None."""
    found = available_colorizers()
    return found[0] if found else None


def resolve_colorizer(spec: str | None, colorize: str = "auto") -> str | None:
    """The colorizer to use for ``--colorizer`` / ``--colorize`` values.

    ``spec``: None -> :func:`default_colorizer`, ``"none"`` -> None (fuse the input image itself), anything
    else unchanged (bundled name, file or run folder). ``colorize="never"`` gives None (nothing to load);
    ``colorize="always"`` without a colorizer is a :class:`~medattn.errors.ConfigError`.
    """
    from medattn.errors import ConfigError

    _check_colorize(colorize, "--colorize")
    if colorize == "never":
        return None
    if spec is None:
        found = default_colorizer()
    else:
        found = None if spec.strip().lower() == "none" else spec
    if found is None and colorize == "always":
        why = "--colorizer none" if spec is not None else "no colorizer is bundled"
        raise ConfigError(f"--colorize always needs a colorizer, but {why}; name one with --colorizer")
    return found


def _load(spec: Any) -> tuple[Any, dict[str, Any]]:
    """(module, card) from a module, a ``LoadedModel``, a bundled name, a checkpoint file or a run folder."""
    from torch import nn

    if isinstance(spec, nn.Module):
        return spec.eval(), {}
    if hasattr(spec, "model") and hasattr(spec, "card"):
        return spec.model.eval(), dict(spec.card)
    from medattn.inference import load_model

    lm = load_model(os.fspath(spec))
    return lm.model.eval(), dict(lm.card)


def classifier_input_size(classifier: Any, card: dict[str, Any] | None = None) -> int:
    """Side at which whole images go to the classifier: the card's ``whole_image_size``, else twice the
    crop size it was trained on (crops are half an image), else 256."""
    card = card or {}
    if card.get("whole_image_size"):
        return int(card["whole_image_size"])
    size = card.get("input_size")
    if size:
        return int(size[0]) * 2
    return 256


def enhance_image(image_rgb_or_gray: np.ndarray, classifier: Any, colorizer: Any = None, alpha: float = 0.5,
                  size: int | None = None, layer: Any = None, colorize: str = "auto") -> dict[str, Any]:
    """CAWE heat map, colorized image and eq. 7 fusion of one image.

    Args:
        image_rgb_or_gray: uint8 (H, W) or (H, W, 3).
        classifier: lesion classifier (module, ``LoadedModel``, bundled name, checkpoint or run folder).
        colorizer: colorization generator (same forms), or None to fuse the input image itself.
        alpha: eq. 7's balance (1 = the image unchanged).
        size: side at which the classifier sees the image (default: from its card).
        layer: layer CAWE reads (default: the classifier's last convolutional stage).
        colorize: one of :data:`COLORIZE_MODES`: ``auto`` colorizes only grayscale inputs (one channel, or
            RGB with equal channels, :func:`~medattn.enhance._images.is_grayscale`) and fuses colour inputs
            in their own colours; ``always`` colorizes every input; ``never`` none. Without a colorizer
            nothing is colorized.

    Returns:
        ``{"heatmap": float32 (H, W) in [0, 1], "colorized": uint8 (H, W, 3) or None (not colorized),
        "fused": uint8 like the fused image, "probability": float, "activated": bool,
        "grayscale": bool (the input was grayscale)}``.
    """
    import torch
    import torch.nn.functional as F

    from medattn.enhance._images import gray_of, is_grayscale, resize
    from medattn.enhance.cawe import CAWE
    from medattn.errors import ConfigError
    from medattn.inference.render import to_rgb8

    _check_colorize(colorize)
    img = np.asarray(image_rgb_or_gray)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ConfigError(f"expected an (H, W) or (H, W, 3) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = to_rgb8(img) if img.ndim == 3 else to_rgb8(img)[..., 0]
    img = img[..., :3] if img.ndim == 3 else img
    gray = gray_of(img)
    grayscale = is_grayscale(img)
    net, card = _load(classifier)
    side = size or classifier_input_size(net, card)
    in_ch = getattr(net, "in_channels", 1)
    src = gray if in_ch == 1 else (img if img.ndim == 3 else np.repeat(gray[..., None], 3, axis=2))
    x = torch.from_numpy(np.array(resize(src, (side, side)))).float().div(255)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    cawe = CAWE(net, layer)
    cam = cawe(x)
    with torch.no_grad():
        prob = float(torch.sigmoid(net(x)).max())
    heat = F.interpolate(cam[None], size=gray.shape, mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    colorized = None
    if colorizer is not None and (colorize == "always" or (colorize == "auto" and grayscale)):
        from medattn.enhance.colorize import colorize as run_generator

        gen, gcard = _load(colorizer)
        gsize = (gcard.get("input_size") or [None])[0] if gcard else None
        colorized = run_generator(gen, gray, size=int(gsize) if gsize else 256)  # the scale it was trained at
    base = colorized if colorized is not None else img  # a colour input not colorized keeps its colours
    return {"heatmap": heat.astype(np.float32), "colorized": colorized, "fused": fuse(base, heat, alpha),
            "probability": prob, "activated": bool(cawe.last_activated and cawe.last_activated[0]),
            "grayscale": grayscale}


__all__ = ["COLORIZE_MODES", "available_colorizers", "available_models", "default_colorizer", "enhance_image", "fuse",
           "resolve_colorizer"]
