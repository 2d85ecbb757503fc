"""Run a denoiser on HU slices, and ``medattn denoise``'s file handling.

:func:`load_denoiser` accepts a registered denoiser with bundled weights (``cadn``
finds ``cadn-ldct`` or a variant's ``cadn_small-ldct``), a weights file (``.safetensors`` + JSON card, or a torch
checkpoint), or ``bm3d``. :func:`denoise_paths` walks the inputs:

* a DICOM series folder -> ``OUT/<folder name>/<same file names>``, one new series;
* a DICOM file -> ``OUT/<file name>`` (a new series of one);
* a NIfTI volume -> ``OUT/<file name>``, denoised axial slice by slice, affine kept;
* PNG/TIFF -> ``OUT/<file name>`` in the same dtype. 8-bit images carry no HU: their
  0..255 are read as the ``window`` (default soft tissue, 40/400) and written back so;
  16-bit unsigned as ``HU + 1024``; signed / float as HU;
* other folders: each supported file inside, under ``OUT/<folder name>/``.

A DICOM whose Modality is not CT (MR, CR, ...) is refused unless ``force``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import ConfigError, MedattnIOError

Denoiser = Callable[[np.ndarray], np.ndarray]
_RASTER = (".png", ".tif", ".tiff")
_NIFTI = (".nii", ".nii.gz")


def estimate_noise_hu(hu: np.ndarray, body_hu: float = -500.0) -> float:
    """Noise standard deviation (HU) inside the body: MAD of the finest diagonal wavelet band.

    Donoho's estimator (median |HH| / 0.6745) restricted to where the slice is denser than
    ``body_hu``: over the whole slice the flat air outside the patient biases it low.
    """
    x = np.asarray(hu, dtype=np.float64)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    # Haar HH band: (a - b - c + d) / 2 over 2x2 blocks
    hh = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    body = (x[0::2, 0::2] > body_hu) & (x[1::2, 1::2] > body_hu)
    coeffs = hh[body] if body.sum() > 64 else hh.ravel()
    return float(np.median(np.abs(coeffs)) / 0.6745)


def bm3d_denoise(hu: np.ndarray, sigma_hu: float | None = None) -> np.ndarray:
    """BM3D (Dabov et al. 2007, the ``bm3d`` package) on one HU slice.

    The noise level is estimated inside the body (:func:`estimate_noise_hu`) unless ``sigma_hu``
    is given.
    """
    try:
        import bm3d
    except ImportError as exc:
        raise ConfigError("BM3D needs the optional package: pip install 'medattn[bm3d]'") from exc

    x = np.asarray(hu, dtype=np.float64) / 1000.0
    sigma = (sigma_hu if sigma_hu is not None else estimate_noise_hu(hu)) / 1000.0
    return np.asarray(bm3d.bm3d(x, sigma_psd=max(sigma, 1e-4)), dtype=np.float32) * 1000.0


def torch_denoiser(model: Any, tile: int | None = None) -> Denoiser:
    """Wrap a denoising network (normalised-HU in and out) as an HU -> HU function."""
    import torch

    from medattn.models.ldct_denoisers import HU_SCALE

    model.eval()

    def run(hu: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None] / HU_SCALE
        with torch.no_grad():
            y = model(x)
        return (y[0, 0].float().numpy() * HU_SCALE).astype(np.float32)

    return run


def load_denoiser(spec: str) -> tuple[Denoiser, str]:
    """A denoiser from ``spec`` (see the module docstring) and a short description of it."""
    if spec.lower() == "bm3d":
        bm3d_denoise(np.zeros((16, 16), np.float32), sigma_hu=1.0)  # fail early if bm3d is missing
        return bm3d_denoise, "BM3D"
    from medattn.models.hub import is_bundled, load_bundled, load_model_file

    path = Path(spec)
    if path.suffix in (".safetensors", ".pt", ".pth", ".ckpt") or path.exists():
        model = load_model_file(path)
        return torch_denoiser(model), path.name
    from medattn.models import model_info
    from medattn.models.hub import WEIGHTS_DIR

    # "cadn" also finds a bundled variant such as "cadn_small-ldct"
    variants = sorted(p.stem for p in WEIGHTS_DIR.glob(f"{spec}*-ldct.safetensors"))
    for name in (f"{spec}-ldct", spec, *variants):
        if is_bundled(name):
            return torch_denoiser(load_bundled(name)), name
    info = model_info(spec)  # unknown names: ConfigError with suggestions
    if info.task != "denoising":
        raise ConfigError(f"model {spec!r} is a {info.task} model, not a denoiser")
    raise ConfigError(f"no trained weights for {spec!r} ship with medattn; give a weights file "
                      "(`medattn train configs/ldct_cadn.yaml` writes one) or 'bm3d'")


# -- files ---------------------------------------------------------------------------------------


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _check_modality(path: Path, modality: str | None, force: bool) -> None:
    if modality not in (None, "", "CT") and not force:
        raise MedattnIOError(path, f"modality is {modality}, not CT: the denoisers are trained on CT "
                                   "(use --force to run anyway)")


class _Job:
    """One unit of output: a list of slices to denoise and how to write them back."""

    def __init__(self, n_slices: int, run: Callable[[Callable[[np.ndarray], np.ndarray], Callable[[], None]], None],
                 label: str) -> None:
        self.n_slices, self.run, self.label = n_slices, run, label


def _dicom_job(files: list[Path], out_dir: Path, force: bool, description: str) -> _Job:
    import pydicom

    from medattn.denoise.io import new_series_uid, write_dicom_slice
    from medattn.io import read_image

    headers = []
    for f in files:
        try:
            headers.append(pydicom.dcmread(f, stop_before_pixels=True))
        except Exception as exc:
            raise MedattnIOError(f, f"cannot read DICOM ({exc})") from exc
        _check_modality(f, str(headers[-1].get("Modality", "")).strip() or None, force)
    uid = new_series_uid()

    def run(fn: Callable[[np.ndarray], np.ndarray], tick: Callable[[], None]) -> None:
        for f, hdr in zip(files, headers, strict=True):
            data = read_image(f)
            if data.array.ndim != 2:
                raise MedattnIOError(f, f"expected one gray slice, got shape {data.array.shape} "
                                        "(multi-frame or colour DICOM is not supported)")
            write_dicom_slice(out_dir / f.name, fn(data.array.astype(np.float32)), hdr, uid,
                              derivation=f"medattn LDCT denoising ({description})")
            tick()

    return _Job(len(files), run, str(files[0].parent if len(files) > 1 else files[0]))


def _nifti_job(path: Path, out_path: Path) -> _Job:
    import nibabel as nib

    from medattn.denoise.io import write_nifti_like

    try:
        img = nib.load(str(path))
        shape = img.shape
    except Exception as exc:
        raise MedattnIOError(path, f"cannot read NIfTI ({exc})") from exc
    if len(shape) != 3:
        raise MedattnIOError(path, f"expected a 3-D CT volume, got shape {shape}")

    def run(fn: Callable[[np.ndarray], np.ndarray], tick: Callable[[], None]) -> None:
        vol = np.asarray(img.dataobj, dtype=np.float32)
        out = np.empty_like(vol)
        for k in range(vol.shape[2]):
            out[:, :, k] = fn(vol[:, :, k])
            tick()
        write_nifti_like(out_path, out, path)

    return _Job(int(shape[2]), run, str(path))


def _raster_job(path: Path, out_path: Path, window: tuple[float, float]) -> _Job:
    from medattn.io import read_image, write_image

    def run(fn: Callable[[np.ndarray], np.ndarray], tick: Callable[[], None]) -> None:
        data = read_image(path)
        a = data.array
        if a.ndim != 2:
            raise MedattnIOError(path, f"expected a gray CT slice, got shape {a.shape}")
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
        if a.dtype == np.uint8:
            hu = lo + a.astype(np.float32) / 255.0 * (hi - lo)
            den = fn(hu)
            res = np.clip(np.rint((den - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
        elif a.dtype == np.uint16:
            den = fn(a.astype(np.float32) - 1024.0)
            res = np.clip(np.rint(den + 1024.0), 0, 65535).astype(np.uint16)
        elif a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            res = np.clip(np.rint(fn(a.astype(np.float32))), info.min, info.max).astype(a.dtype)
        else:
            res = fn(a.astype(np.float32)).astype(a.dtype)
        write_image(out_path, res, data.meta)
        tick()

    return _Job(1, run, str(path))


def plan_jobs(inputs: Iterable[str | os.PathLike[str]], out: Path, *, force: bool = False,
              window: tuple[float, float] = (40.0, 400.0), description: str = "") -> list[_Job]:
    """Check every input and decide its output before anything is computed."""
    jobs: list[_Job] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise MedattnIOError(path, "no such file or directory")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            dicoms = [p for p in files if _is_dicom(p)]
            others = [p for p in files if p not in dicoms and (p.suffix.lower() in _RASTER or p.name.endswith(_NIFTI))]
            if dicoms:
                jobs.append(_dicom_job(dicoms, out / path.name, force, description))
            for p in others:
                jobs.extend(plan_jobs([p], out / path.name, force=force, window=window, description=description))
            if not dicoms and not others:
                raise MedattnIOError(path, "folder holds no DICOM, NIfTI, PNG or TIFF file")
        elif path.name.lower().endswith(_NIFTI):
            jobs.append(_nifti_job(path, out / path.name))
        elif path.suffix.lower() in _RASTER:
            jobs.append(_raster_job(path, out / path.name, window))
        elif _is_dicom(path):
            jobs.append(_dicom_job([path], out, force, description))
        else:
            raise MedattnIOError(path, "unsupported input: give DICOM, NIfTI (.nii/.nii.gz), PNG or TIFF")
    return jobs


def denoise_paths(model: str, inputs: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                  force: bool = False, dose: float | None = None, window: tuple[float, float] = (40.0, 400.0),
                  progress: bool = True) -> int:
    """Denoise every input into ``out`` (see the module docstring); returns the number of slices written.

    ``dose`` first simulates that dose fraction from each slice (for demonstrations on
    normal-dose data), then denoises the simulated slice.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Path(out)
    fn, description = load_denoiser(model)
    jobs = plan_jobs(inputs, out, force=force, window=window, description=description)
    run_fn = fn
    if dose is not None:
        from medattn.denoise.simulate import simulate_low_dose

        def run_fn(hu: np.ndarray) -> np.ndarray:
            return fn(simulate_low_dose(hu, dose, seed=0))

    total = sum(j.n_slices for j in jobs)
    columns = (TextColumn("[bold]denoise"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("denoise", total=total)
        for job in jobs:
            job.run(run_fn, lambda: bar.advance(task))
    return total
