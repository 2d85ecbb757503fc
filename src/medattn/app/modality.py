"""What kind of image a case holds, and which models' modalities fit it.

Model cards declare ``"modality"``: the list of input modalities the model was
trained on (``endoscopy``, ``dermoscopy``, ``ct``, ``mr``; ``gray`` for models
made for grayscale 2D pictures of those kinds). :func:`detect_modality` tells
the input's modality:

* DICOM: the Modality tag (``CT`` -> ``ct``, ``MR`` -> ``mr``, others lower-cased);
* volumes (NIfTI, a DICOM series without the tag): ``ct`` when the values
  look like Hounsfield units (air near -1000), else ``volume`` (unknown kind);
* colour 2D pictures: ``endoscopy`` or ``dermoscopy`` from a cheap colour
  heuristic (:func:`guess_colour_kind`), ``rgb`` when it cannot tell;
* gray 2D pictures: ``gray``.

:func:`fitting` says which model modalities an input modality accepts, e.g.
``rgb`` (a colour picture of unknown kind) accepts endoscopy and dermoscopy
models, ``gray`` accepts CT models and the ``gray`` ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: model modalities each input modality accepts
_FITS: dict[str, frozenset[str]] = {
    "endoscopy": frozenset({"endoscopy"}),
    "dermoscopy": frozenset({"dermoscopy"}),
    "rgb": frozenset({"endoscopy", "dermoscopy"}),
    "ct": frozenset({"ct"}),
    "mr": frozenset({"mr"}),
    "gray": frozenset({"ct", "gray"}),
}
#: labels for the menus and messages
LABELS: dict[str, str] = {
    "endoscopy": "endoscopy (colour)",
    "dermoscopy": "dermoscopy (colour)",
    "rgb": "colour image of unknown kind",
    "ct": "CT",
    "mr": "MR",
    "gray": "gray 2D image",
    "volume": "volume of unknown kind",
    "unknown": "unknown modality",
}
_DICOM_MODALITY = {"CT": "ct", "MR": "mr", "ES": "endoscopy", "XC": "dermoscopy"}


def fitting(input_modality: str) -> frozenset[str]:
    """The model modalities that fit an input of ``input_modality`` (empty for unknown inputs)."""
    return _FITS.get(input_modality, frozenset({input_modality}))


def fits(model_modalities: list[str] | None, input_modality: str) -> bool:
    """True when a model declaring ``model_modalities`` may run on an ``input_modality`` input.

    A model without a declared modality (``None`` or empty) fits nothing: it runs only on an explicit override.
    """
    return bool(model_modalities) and bool(fitting(input_modality) & set(model_modalities or ()))


def label(modality: str | None) -> str:
    return LABELS.get(modality or "unknown", modality or "unknown")


def detect_modality(data: Any) -> str:
    """The modality of a read image (``medattn.io`` ``Image``: ``.array`` and ``.meta``)."""
    return detect(data)[0]


def detect(data: Any) -> tuple[str, str]:
    """``(modality, best guess)``: the best guess is the modality to take a default model from; it differs
    only for ``rgb`` (a colour picture the heuristic cannot tell), where it is the kind it leans to."""
    meta = data.meta
    if (meta.modality or "").strip():
        return detect_tag(meta.modality)
    a = np.asarray(data.array)
    layout = meta.layout
    if layout in ("HWC", "ZHWC") and a.shape[-1] >= 3:
        rgb = a[a.shape[0] // 2] if layout == "ZHWC" else a
        return guess_colour_kind(rgb[..., :3])
    if layout == "ZHW" or meta.format == "nifti":
        found = "ct" if looks_like_hu(a) else "volume"
        return found, found
    return "gray", "gray"


def detect_tag(tag: str) -> tuple[str, str]:
    """``(modality, best guess)`` from a DICOM Modality tag (``CT`` -> ``ct``, ``MR`` -> ``mr``...)."""
    found = _DICOM_MODALITY.get(tag.strip().upper(), tag.strip().lower())
    return found, found


def looks_like_hu(a: np.ndarray) -> bool:
    """Values in Hounsfield units: air (about -1000) present and nothing far outside [-1100, 4000]."""
    a = np.asarray(a)
    finite = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a.ravel()
    if finite.size == 0:
        return False
    lo, hi = np.percentile(finite, [1, 99.9])
    return bool(-1100 <= lo <= -700 and hi <= 4000)


def colour_features(rgb: np.ndarray) -> dict[str, float]:
    """Cheap features of a colour picture, on a 64 x 64 thumbnail scaled to [0, 1].

    ``dark``: share of near-black pixels (the unlit border of an endoscope's view); ``border``: mean brightness
    of the outer ring (skin around a dermoscopy lesion is bright); ``red_blue``: mean red over mean blue
    (mucosa is red-pink, skin and naevi are beige-brown with more blue).
    """
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        lo, hi = float(np.min(a)), float(np.max(a))
        a = np.clip((a.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    small = np.asarray(Image.fromarray(a).resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
    v = small.max(-1)
    ring = np.ones(v.shape, bool)
    ring[5:-5, 5:-5] = False
    return {
        "dark": float((v < 0.1).mean()),
        "border": float(v[ring].mean()),
        "red_blue": float(small[..., 0].mean() / (small[..., 2].mean() + 1e-3)),
    }


def guess_colour_kind(rgb: np.ndarray) -> tuple[str, str]:
    """``(kind, lean)`` for a colour picture (H, W, 3): kind is ``endoscopy``, ``dermoscopy`` or ``rgb`` (cannot
    tell); lean is the closer of the two kinds.

    Three votes each way (dark border, dim or bright outer ring, red over blue); two more votes one way than the
    other decide. Measured on the first 100 images of Kvasir-SEG, CVC-ClinicDB, PH2 and ISIC 2017 (docs/app.md).
    """
    f = colour_features(rgb)
    endo = int(f["dark"] > 0.05) + int(f["red_blue"] > 1.8) + int(f["border"] < 0.45)
    derm = int(f["dark"] < 0.01) + int(f["red_blue"] < 1.5) + int(f["border"] > 0.55)
    lean = "endoscopy" if endo > derm or (endo == derm and f["red_blue"] > 1.65) else "dermoscopy"
    return (lean if abs(endo - derm) >= 2 else "rgb"), lean
