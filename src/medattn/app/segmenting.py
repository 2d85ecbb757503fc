"""The segment pipeline of the application: a segmentation model slice by slice, the shown slice's overlay,
mask layer and attention map, the whole mask, and the lesion table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medattn.app.processing import ProcessResult, Progress, load_cached, save_png, user_model_path
from medattn.app.viewer import viewer_files
from medattn.inference.lesions import find_lesions, min_size_from_card


def segment_case(slices: list[np.ndarray], data: Any, model: str, user_models: dict[str, Path], tmp: Path,
                 progress: Progress, start: float, span: float, volume: bool) -> ProcessResult:
    """Segment every slice with ``model``; progress runs from ``start`` to ``start + span``.

    The model card's inference settings (TTA, mask threshold; :meth:`LoadedModel.settings`) are used
    and recorded in the results (``inference``)."""
    from medattn.inference import predict_image
    from medattn.inference.files import display_image
    from medattn.inference.render import heat_overlay, mask_rgba, overlay, to_rgb8

    lm = load_cached(user_model_path(model, user_models))
    progress(start, f"segmenting with {lm.name}")
    probs, atts, shown = [], [], []
    for i, sl in enumerate(slices):
        view = display_image(type(data)(sl, data.meta))
        pred = predict_image(lm, view, tta=lm.tta)
        probs.append(pred.prob)
        atts.append(pred.attention)
        shown.append(view)
        progress(start + span * (i + 1) / len(slices), f"segmented slice {i + 1} of {len(slices)}")
    masks = np.stack([p > lm.threshold for p in probs])
    k = int(np.argmax(masks.reshape(len(masks), -1).sum(1))) if masks.any() else len(slices) // 2
    spacing = data.meta.spacing[-2:] if data.meta.spacing else None
    res = ProcessResult()
    view = shown[k]
    res.files += [
        ("preview", save_png(tmp, "preview.png", to_rgb8(view)), "preview.png"),
        ("overlay", save_png(tmp, "overlay.png", overlay(view, masks[k])), "overlay.png"),
        ("mask_rgba", save_png(tmp, "mask_rgba.png", mask_rgba(masks[k])), "mask_rgba.png"),
        ("attention", save_png(tmp, "attention.png", heat_overlay(view, atts[k])), "attention.png"),
        ("mask", save_png(tmp, "mask.png", masks[k].astype(np.uint8) * 255), "mask.png"),
    ]
    vol = masks.astype(np.uint8) if volume else masks[0].astype(np.uint8)
    np.save(tmp / "mask_volume.npy", vol)
    res.files.append(("mask_volume", tmp / "mask_volume.npy", "mask_volume.npy"))
    # One lesion = one connected component (3D in a volume); specks below the card's minimum size are dropped.
    min_size = min_size_from_card(lm.card, probs[0].shape)
    labels, lesions = find_lesions(np.stack(probs) if volume else probs[0], lm.threshold,
                                   data.meta.spacing if volume else spacing, min_size)
    res.files += viewer_files(tmp, labels=labels, attention=np.stack(atts) if volume else atts[0])
    res.results = {"lesions": lesions, "min_lesion_area_px": min_size.px, "min_lesion_area_mm2": min_size.mm2,
                   "spacing": list(spacing) if spacing else None, "shown_slice": k, "model": lm.name,
                   "inference": lm.settings()}
    return res

