"""The denoise pipeline of the application, on top of :mod:`medattn.denoise.apply`.

The case input goes through the same planner and writers as
``medattn denoise`` (DICOM in -> DICOM out with a new series UID and DERIVED
image type; NIfTI in -> NIfTI out with the affine kept; PNG/TIFF in -> the
same out), then the result is read back for the side-by-side view and the
noise estimate.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from medattn.app.processing import ProcessResult, Progress, save_png, user_model_path
from medattn.errors import MedattnError


def _view(hu_slice: np.ndarray) -> np.ndarray:
    from medattn.io import apply_window

    return (apply_window(hu_slice, "soft_tissue") * 255 + 0.5).astype(np.uint8)


def denoise_case(data: Any, model: str, user_models: dict[str, Path], inputs: list[Path], input_format: str,
                 tmp: Path, progress: Progress, start: float, span: float) -> tuple[ProcessResult, np.ndarray]:
    """Denoise the case input; returns the result files and the denoised slices (HU, (Z, H, W))."""
    from medattn.app.viewer import match_orientation
    from medattn.denoise.apply import estimate_noise_hu, load_denoiser, plan_jobs
    from medattn.io import read_dicom_series, read_image

    modality = (data.meta.modality or "").upper()
    if modality and modality != "CT":
        raise MedattnError(f"denoising is for CT; this image's modality is {modality}")
    if data.meta.layout in ("HWC", "ZHWC"):
        raise MedattnError("denoising needs a gray CT image, not a colour one")
    fn, description = load_denoiser(user_model_path(model, user_models))
    if input_format == "dicom-series":
        src = tmp / "series_in"
        src.mkdir()
        for p in inputs:
            shutil.copyfile(p, src / p.name)
        sources = [src]
    else:
        sources = [inputs[0]]
    out = tmp / "denoised"
    jobs = plan_jobs(sources, out, description=description)
    total = sum(j.n_slices for j in jobs)
    done = [0]

    def tick() -> None:
        done[0] += 1
        progress(start + span * done[0] / max(total, 1), f"denoised slice {done[0]} of {total}")

    progress(start, f"denoising with {description}")
    for job in jobs:
        job.run(fn, tick)

    written = sorted(p for p in out.rglob("*") if p.is_file())
    if input_format == "dicom-series":
        result = read_dicom_series(written[0].parent)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in written:
                zf.write(p, p.name)
        (tmp / "denoised_series.zip").write_bytes(buf.getvalue())
        processed_file = (tmp / "denoised_series.zip", "denoised_series.zip")
    else:
        result = read_image(written[0])
        suffix = "".join(written[0].suffixes[-2:]) if written[0].name.endswith(".nii.gz") else written[0].suffix
        processed_file = (written[0], f"denoised{suffix}")

    before = data.array if data.array.ndim == 3 else data.array[None]
    after = result.array if result.array.ndim == 3 else result.array[None]
    after = match_orientation(after.astype(np.float32), data.meta)  # the input was shown radiologically
    k = before.shape[0] // 2
    hu_input = data.meta.modality is not None or data.array.dtype != np.uint8
    to_view = _view if hu_input else (lambda a: np.clip(a, 0, 255).astype(np.uint8))
    res = ProcessResult()
    res.files += [
        ("preview", save_png(tmp, "preview.png", to_view(before[k])), "preview.png"),
        ("processed", save_png(tmp, "processed.png", to_view(after[k])), "processed.png"),
        ("processed_file", processed_file[0], processed_file[1]),
    ]
    if hu_input:
        res.results["metrics"] = {
            "noise SD before (HU, estimated)": round(estimate_noise_hu(before[k]), 1),
            "noise SD after (HU, estimated)": round(estimate_noise_hu(after[k]), 1),
            "denoiser": description,
        }
    if getattr(fn, "notes", None):
        # what was done about the pixel spacing (resampled to the model's grid, or unknown), without paths
        res.results.setdefault("metrics", {})["pixel spacing"] = "; ".join(
            f"{m.split(': ', 1)[-1]} ({n} slice{'s' if n != 1 else ''})" for m, n in fn.notes.items())
    res.results["shown_slice"] = k
    return res, after
