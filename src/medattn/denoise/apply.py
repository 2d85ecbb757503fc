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

Pixel spacing: low-dose noise depends on the pixel size, so a network denoises well only on
the grids it was trained on (its card's ``data.simulation.spacing_mm``: one size or a
``[low, high]`` range). :class:`Denoiser` reads each slice's spacing (DICOM ``PixelSpacing``,
NIfTI voxel size, TIFF resolution, or ``spacing=`` / ``--spacing`` for files without one); a
slice off the model's grid is resampled to the nearest trained spacing, denoised, and resampled
back to its own grid; a slice of unknown spacing is denoised as it is, with a warning.
:attr:`Denoiser.notes` says what was done.

Noise kept: ``keep_noise = k`` returns ``denoised + k (input - denoised)``. For a scan at a
fraction ``d`` of the normal dose whose noise the network removes entirely, ``k = d`` is the
least-squares estimate of the *normal-dose* image (the normal-dose noise is the share ``d`` of the
low-dose noise variance), and it keeps the normal-dose noise texture a reader expects instead of
a waxy, over-smooth image. Bundled cards set it (``inference.keep_noise``; 0.25 for quarter dose);
``--keep-noise`` overrides it, 0 removes all the estimated noise.

Self-ensemble: ``tta`` runs the network on the 8 rotations and mirror images of the slice and
averages the 8 outputs, turned back (the noise has no preferred orientation, the network's
errors partly do): about +0.17 dB window PSNR on every real L506 quarter-dose slice for the
bundled ``cadn-ldct``, at 8x the network time. Cards set the default (``inference.tta``);
``--tta/--no-tta`` overrides it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import ConfigError, MedattnIOError

SliceFn = Callable[[np.ndarray], np.ndarray]
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


def torch_denoiser(model: Any, tta: bool = False) -> SliceFn:
    """Wrap a denoising network (normalised-HU in and out) as an HU -> HU function.

    ``tta``: the mean of the network's outputs on the 8 rotations / mirror images of the slice,
    each turned back (self-ensemble).
    """
    import torch

    from medattn.models.ldct_denoisers import HU_SCALE

    model.eval()
    turns = [(k, flip) for k in range(4) for flip in (False, True)] if tta else [(0, False)]

    def run(hu: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None] / HU_SCALE
        total = None
        with torch.no_grad():
            for k, flip in turns:
                t = torch.rot90(x, k, (2, 3))
                y = model(t.flip(3) if flip else t).float()
                y = torch.rot90(y.flip(3) if flip else y, -k, (2, 3))
                total = y if total is None else total + y
        return (total[0, 0].numpy() * (HU_SCALE / len(turns))).astype(np.float32)

    return run


#: a slice within this relative distance of the trained grid is denoised as it is
SPACING_TOLERANCE = 0.03


def card_grid(card: dict[str, Any]) -> tuple[float, float] | None:
    """The pixel sizes (mm) a denoiser's card says it was trained on, as ``(low, high)``; None if unknown."""
    sim = (card.get("data") or {}).get("simulation") or {}
    value = sim.get("spacing_mm")
    if value is None:
        return None
    if isinstance(value, int | float):
        return (float(value), float(value))
    lo, hi = (float(v) for v in value)
    return (min(lo, hi), max(lo, hi))


def card_tta(card: dict[str, Any]) -> bool:
    """Whether a card's denoiser runs as an 8-fold self-ensemble by default (``inference.tta``, validated
    as every card's inference block is: :func:`medattn.inference.loading.card_inference`)."""
    from medattn.inference.loading import card_inference

    return card_inference(card)["tta"]


def card_keep_noise(card: dict[str, Any]) -> float:
    """The share of the estimated noise a card's denoiser keeps by default (``inference.keep_noise``; 0 if unset)."""
    return float((card.get("inference") or {}).get("keep_noise", 0.0))


def resample_slice(hu: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``hu`` resampled to ``shape`` (bilinear; antialiased when shrinking), same field of view."""
    import torch
    import torch.nn.functional as F

    if tuple(hu.shape) == tuple(shape):
        return np.asarray(hu, dtype=np.float32)
    shrink = shape[0] < hu.shape[0] or shape[1] < hu.shape[1]
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None]
        out = F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False, antialias=shrink)
    return out[0, 0].numpy()


@dataclass
class Denoiser:
    """A slice denoiser (HU -> HU) that knows the grid it was trained on.

    ``denoiser(hu, spacing_mm)`` runs ``fn`` on the slice, first resampled to the nearest
    trained pixel size when ``spacing_mm`` (``(dy, dx)`` or one number) lies outside ``grid_mm``
    by more than :data:`SPACING_TOLERANCE`, and back to the slice's own grid after.
    ``grid_mm=None`` (BM3D, or a card without it) takes any grid. What was done is counted in
    :attr:`notes` (``{message: slices}``).
    """

    fn: SliceFn
    description: str
    grid_mm: tuple[float, float] | None = None
    keep_noise: float = 0.0
    notes: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep_noise <= 1.0:
            raise ConfigError(f"keep_noise must be in [0, 1], got {self.keep_noise}")

    def target_spacing(self, spacing_mm: tuple[float, float] | None) -> tuple[float, float] | None:
        """The pixel size to run at, or None to run on the slice's own grid."""
        if self.grid_mm is None or spacing_mm is None:
            return None
        lo, hi = self.grid_mm
        target = tuple(min(max(s, lo), hi) for s in spacing_mm)
        if all(abs(t - s) <= SPACING_TOLERANCE * t for t, s in zip(target, spacing_mm, strict=True)):
            return None
        return target  # type: ignore[return-value]

    def __call__(self, hu: np.ndarray, spacing_mm: float | tuple[float, float] | None = None,
                 source: str | None = None) -> np.ndarray:
        hu = np.asarray(hu, dtype=np.float32)
        where = f"{source}: " if source else ""
        if spacing_mm is not None and not isinstance(spacing_mm, tuple | list):
            spacing_mm = (float(spacing_mm), float(spacing_mm))
        spacing = tuple(float(s) for s in spacing_mm) if spacing_mm is not None else None
        if spacing is not None and (len(spacing) != 2 or not all(np.isfinite(spacing)) or min(spacing) <= 0):
            raise ValueError(f"pixel spacing must be two positive sizes in mm, got {spacing_mm}")
        out = self._on_grid(hu, spacing, where)  # type: ignore[arg-type]
        return out + self.keep_noise * (hu - out) if self.keep_noise else out

    def _on_grid(self, hu: np.ndarray, spacing: tuple[float, float] | None, where: str) -> np.ndarray:
        grid = self._grid_text()
        if spacing is None:
            if self.grid_mm is not None:
                self.notes[f"{where}pixel spacing unknown: denoised as it is (the model was trained on {grid}; "
                           "give --spacing)"] += 1
            return self.fn(hu)
        target = self.target_spacing(spacing)
        if target is None:
            if self.grid_mm is not None:
                self.notes[f"{where}{_mm(spacing)} pixels: on the model's grid ({grid}), denoised as they are"] += 1
            return self.fn(hu)
        shape = (max(8, round(hu.shape[0] * spacing[0] / target[0])), max(8, round(hu.shape[1] * spacing[1] / target[1])))
        out = resample_slice(self.fn(resample_slice(hu, shape)), hu.shape)
        self.notes[f"{where}{_mm(spacing)} pixels: resampled to {_mm(target)} (the model's grid, {grid}), "
                   "denoised, resampled back"] += 1
        return out

    def _grid_text(self) -> str:
        if self.grid_mm is None:
            return "any grid"
        lo, hi = self.grid_mm
        return f"{lo:.3g} mm pixels" if abs(hi - lo) < 1e-6 else f"{lo:.3g}-{hi:.3g} mm pixels"


def _mm(spacing: tuple[float, ...]) -> str:
    return f"{spacing[0]:.3g} mm" if abs(spacing[0] - spacing[-1]) < 1e-6 else f"{spacing[0]:.3g} x {spacing[1]:.3g} mm"


def load_denoiser(spec: str, keep_noise: float | None = None, tta: bool | None = None) -> tuple[Denoiser, str]:
    """A denoiser from ``spec`` (see the module docstring) and a short description of it.

    ``keep_noise`` and ``tta`` override the card's ``inference.keep_noise`` and ``inference.tta``
    (see the module docstring; BM3D has no self-ensemble).
    """
    if spec.lower() == "bm3d":
        bm3d_denoise(np.zeros((16, 16), np.float32), sigma_hu=1.0)  # fail early if bm3d is missing
        return Denoiser(bm3d_denoise, "BM3D", keep_noise=keep_noise or 0.0), "BM3D"
    from medattn.models.hub import bundled_weights, is_bundled, load_bundled, load_model_file, model_card

    def build(model: Any, card: dict[str, Any], name: str) -> tuple[Denoiser, str]:
        keep = card_keep_noise(card) if keep_noise is None else float(keep_noise)
        ensemble = card_tta(card) if tta is None else bool(tta)
        description = f"{name} (8-fold self-ensemble)" if ensemble else name
        return Denoiser(torch_denoiser(model, tta=ensemble), description, card_grid(card), keep), description

    path = Path(spec)
    if path.suffix in (".safetensors", ".pt", ".pth", ".ckpt") or path.exists():
        model = load_model_file(path)
        return build(model, model_card(path) if path.suffix == ".safetensors" else {}, path.name)
    from medattn.models import model_info
    from medattn.models.hub import WEIGHTS_DIR

    # "cadn" also finds a bundled variant such as "cadn_small-ldct"
    variants = sorted(p.stem for p in WEIGHTS_DIR.glob(f"{spec}*-ldct.safetensors"))
    for name in (f"{spec}-ldct", spec, *variants):
        if is_bundled(name):
            return build(load_bundled(name), model_card(bundled_weights(name)), name)
    info = model_info(spec)  # unknown names: ConfigError with suggestions
    if info.task != "denoising":
        raise ConfigError(f"model {spec!r} is a {info.task} model, not a denoiser")
    raise ConfigError(f"no trained weights for {spec!r} ship with medattn; give a weights file "
                      "(`medattn train configs/ldct_cadn.yaml` writes one) or 'bm3d'")


def _run(fn: Callable[..., np.ndarray], hu: np.ndarray, spacing: tuple[float, float] | None,
         source: Path, label: str | os.PathLike[str] | None = None) -> np.ndarray:
    """``fn`` on one slice of ``source``; a :class:`Denoiser` also gets its spacing and ``label`` (default: source)."""
    if not np.isfinite(hu).all():
        bad = int((~np.isfinite(hu)).sum())
        raise MedattnIOError(source, f"holds {bad} NaN or infinite value(s): not a valid CT image")
    where = str(label if label is not None else source)
    out = fn(hu, spacing, where) if isinstance(fn, Denoiser | _SimulateFirst) else fn(hu)
    if not np.isfinite(out).all():
        raise MedattnIOError(source, "the denoiser returned NaN or infinite values")
    return out


def _inplane(spacing: Any, axes: tuple[int, int]) -> tuple[float, float] | None:
    """In-plane pixel size from a spacing tuple (None when missing, zero or not finite)."""
    if spacing is None:
        return None
    try:
        values = tuple(float(spacing[a]) for a in axes)
    except (IndexError, TypeError, ValueError):
        return None
    return values if all(np.isfinite(values)) and min(values) > 0 else None


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


def _dicom_job(files: list[Path], out_dir: Path, force: bool, description: str,
               spacing: tuple[float, float] | None = None) -> _Job:
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
            if "RescaleIntercept" not in hdr and isinstance(fn, Denoiser | _SimulateFirst):
                # without a rescale the stored values may not be HU (often HU + 1024): say so
                denoiser = fn if isinstance(fn, Denoiser) else fn.denoiser
                median = float(np.median(data.array))
                denoiser.notes[f"{f}: no RescaleIntercept: stored values taken as HU (median {median:.0f}; "
                               "soft tissue should be near 40)"] += 1
            if data.array.ndim != 2:
                raise MedattnIOError(f, f"expected one gray slice, got shape {data.array.shape} "
                                        "(multi-frame or colour DICOM is not supported)")
            den = _run(fn, data.array.astype(np.float32), _inplane(data.meta.spacing, (0, 1)) or spacing, f,
                       f.parent if len(files) > 1 else f)
            write_dicom_slice(out_dir / f.name, den, hdr, uid, derivation=f"medattn LDCT denoising ({description})")
            tick()

    return _Job(len(files), run, str(files[0].parent if len(files) > 1 else files[0]))


def _nifti_job(path: Path, out_path: Path, spacing: tuple[float, float] | None = None) -> _Job:
    import nibabel as nib

    from medattn.denoise.io import write_nifti_like

    try:
        img = nib.load(str(path))
        shape = img.shape
    except Exception as exc:
        raise MedattnIOError(path, f"cannot read NIfTI ({exc})") from exc
    if len(shape) != 3:
        raise MedattnIOError(path, f"expected a 3-D CT volume, got shape {shape}")

    inplane = _inplane(img.header.get_zooms(), (0, 1)) or spacing

    def run(fn: Callable[[np.ndarray], np.ndarray], tick: Callable[[], None]) -> None:
        vol = np.asarray(img.dataobj, dtype=np.float32)
        if not np.isfinite(vol).all():
            raise MedattnIOError(path, f"holds {int((~np.isfinite(vol)).sum())} NaN or infinite voxel(s): "
                                       "not a valid CT volume")
        out = np.empty_like(vol)
        for k in range(vol.shape[2]):
            out[:, :, k] = _run(fn, vol[:, :, k], inplane, path)
            tick()
        write_nifti_like(out_path, out, path)

    return _Job(int(shape[2]), run, str(path))


def _raster_job(path: Path, out_path: Path, window: tuple[float, float],
                spacing: tuple[float, float] | None = None) -> _Job:
    from medattn.io import read_image, write_image

    def run(fn: Callable[[np.ndarray], np.ndarray], tick: Callable[[], None]) -> None:
        data = read_image(path)
        a = data.array
        if a.ndim != 2:
            raise MedattnIOError(path, f"expected a gray CT slice, got shape {a.shape}")
        lo, hi = window[0] - window[1] / 2, window[0] + window[1] / 2
        inplane = _inplane(data.meta.spacing, (0, 1)) or spacing

        def fn1(hu: np.ndarray) -> np.ndarray:
            return _run(fn, hu, inplane, path)

        if a.dtype == np.uint8:
            hu = lo + a.astype(np.float32) / 255.0 * (hi - lo)
            den = fn1(hu)
            res = np.clip(np.rint((den - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
        elif a.dtype == np.uint16:
            den = fn1(a.astype(np.float32) - 1024.0)
            res = np.clip(np.rint(den + 1024.0), 0, 65535).astype(np.uint16)
        elif a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            res = np.clip(np.rint(fn1(a.astype(np.float32))), info.min, info.max).astype(a.dtype)
        else:
            res = fn1(a.astype(np.float32)).astype(a.dtype)
        write_image(out_path, res, data.meta)
        tick()

    return _Job(1, run, str(path))


def plan_jobs(inputs: Iterable[str | os.PathLike[str]], out: Path, *, force: bool = False,
              window: tuple[float, float] = (40.0, 400.0), description: str = "",
              spacing: tuple[float, float] | None = None) -> list[_Job]:
    """Check every input and decide its output before anything is computed.

    ``spacing`` (mm, ``(dy, dx)``) is used for slices whose file gives none (PNG, most TIFF).
    """
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
                jobs.append(_dicom_job(dicoms, out / path.name, force, description, spacing))
            for p in others:
                jobs.extend(plan_jobs([p], out / path.name, force=force, window=window, description=description,
                                      spacing=spacing))
            if not dicoms and not others:
                raise MedattnIOError(path, "folder holds no DICOM, NIfTI, PNG or TIFF file")
        elif path.name.lower().endswith(_NIFTI):
            jobs.append(_nifti_job(path, out / path.name, spacing))
        elif path.suffix.lower() in _RASTER:
            jobs.append(_raster_job(path, out / path.name, window, spacing))
        elif _is_dicom(path):
            jobs.append(_dicom_job([path], out, force, description, spacing))
        else:
            raise MedattnIOError(path, "unsupported input: give DICOM, NIfTI (.nii/.nii.gz), PNG or TIFF")
    return jobs


class _SimulateFirst:
    """``denoiser`` applied to a simulated ``dose`` of each slice (demonstrations on normal-dose data)."""

    def __init__(self, denoiser: Denoiser, dose: float) -> None:
        self.denoiser, self.dose = denoiser, dose

    def __call__(self, hu: np.ndarray, spacing: tuple[float, float] | None = None,
                 source: str | None = None) -> np.ndarray:
        from medattn.denoise.simulate import simulate_low_dose

        pixel = float(np.sqrt(spacing[0] * spacing[1])) if spacing else 1.0
        return self.denoiser(simulate_low_dose(hu, self.dose, pixel_size_mm=pixel, seed=0), spacing, source)


def _publish(staging: Path, out: Path) -> None:
    """Move every file under ``staging`` to the same place under ``out`` (replacing), then drop ``staging``."""
    import shutil

    for src in sorted(staging.rglob("*")):
        if src.is_file():
            dst = out / src.relative_to(staging)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    shutil.rmtree(staging, ignore_errors=True)


def denoise_paths(model: str, inputs: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                  force: bool = False, dose: float | None = None, window: tuple[float, float] = (40.0, 400.0),
                  progress: bool = True, spacing: float | tuple[float, float] | None = None,
                  notes: Counter[str] | None = None, keep_noise: float | None = None,
                  tta: bool | None = None) -> int:
    """Denoise every input into ``out`` (see the module docstring); returns the number of slices written.

    ``dose`` first simulates that dose fraction from each slice (for demonstrations on
    normal-dose data), then denoises the simulated slice. ``spacing`` (mm) is the pixel size of
    inputs that carry none. Outputs are written to a staging folder inside ``out`` and moved in
    place only when every input succeeded: a failure leaves ``out`` as it was (and no new empty
    folder). ``notes`` receives what was done about pixel spacing (message -> slices).
    ``keep_noise`` overrides the card's share of the estimated noise that is kept, ``tta`` its
    self-ensemble setting.
    """
    import shutil
    import tempfile

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Path(out)
    if spacing is not None and not isinstance(spacing, tuple | list):
        spacing = (float(spacing), float(spacing))
    if spacing is not None and (len(spacing) != 2 or min(spacing) <= 0 or not all(np.isfinite(spacing))):
        raise ConfigError(f"--spacing must be a positive pixel size in mm, got {spacing}")
    fn, description = load_denoiser(model, keep_noise, tta)
    inputs = list(inputs)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".medattn-denoise-", dir=out))
    try:
        jobs = plan_jobs(inputs, staging, force=force, window=window, description=description, spacing=spacing)
        run_fn: Any = _SimulateFirst(fn, dose) if dose is not None else fn
        total = sum(j.n_slices for j in jobs)
        columns = (TextColumn("[bold]denoise"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("denoise", total=total)
            for job in jobs:
                job.run(run_fn, lambda: bar.advance(task))
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if notes is not None:
        notes.update(fn.notes)
    return total
