"""The enhance pipeline of the application (seed paper 002): CAWE heat map,
colorized image (for grayscale inputs, when a colorizer is available; colour
inputs keep their own colours) and the eq. 7 fusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medattn.app.processing import ProcessResult, Progress, save_png, user_model_path


def enhance_case(data: Any, model: str, user_models: dict[str, Path], tmp: Path, progress: Progress,
                 colorizer: str | None = None) -> ProcessResult:
    from medattn.enhance import enhance_image
    from medattn.inference.files import display_image
    from medattn.inference.render import heat_overlay, to_rgb8

    arr = data.array
    if data.meta.layout in ("ZHW", "ZHWC"):
        k = arr.shape[0] // 2
        data = type(data)(arr[k], data.meta)
    view = display_image(data)
    progress(0.2, "computing class-aware attention")
    out = enhance_image(view, user_model_path(model, user_models),
                        colorizer=user_model_path(colorizer, user_models) if colorizer else None)
    progress(0.8, "rendering")
    res = ProcessResult()
    res.files += [
        ("preview", save_png(tmp, "preview.png", to_rgb8(view)), "preview.png"),
        ("processed", save_png(tmp, "processed.png", out["fused"]), "processed.png"),
        ("attention", save_png(tmp, "attention.png", heat_overlay(view, out["heatmap"])), "attention.png"),
        ("processed_file", save_png(tmp, "enhanced.png", out["fused"]), "enhanced.png"),
    ]
    if out["colorized"] is not None:
        res.files.append(("colorized", save_png(tmp, "colorized.png", out["colorized"]), "colorized.png"))
        used = colorizer
    elif colorizer is None:
        used = "none (no colorizer available; fused on the input image)"
    else:
        used = f"none (colour input kept its colours; {colorizer} colorizes grayscale inputs only)"
    res.results["metrics"] = {
        "lesion probability (classifier)": round(float(out["probability"]), 4),
        "lesion class activated": bool(out["activated"]),
        "fusion": "I_en = 0.5 I + 0.5 L_CAWE * I (eq. 7)",
        "colorizer": used,
    }
    return res
