"""CT pair datasets for LDCT denoising: volumes in HU -> simulated (low-dose, normal-dose) slice pairs.

Sources (:func:`load_ct`): a DICOM series folder, a DICOM file (single or
multi-frame), a NIfTI volume, or a folder of slice images (TIFF / NumPy, in HU;
16-bit unsigned slices are read as ``HU + 1024``). Every source becomes a
:class:`CTVolume` of ``(Z, H, W)`` float32 HU (clipped below at -1024) with its
in-plane spacing, which the simulation needs for physical line integrals.

Pairs (:class:`LDCTPairs`): for each slice, the low-dose version is simulated
once (:func:`medattn.denoise.simulate.simulate_low_dose`) with a seed derived
from the dataset seed, the volume name and the slice index, so pairs are
repeatable, and kept in memory and, with ``cache_dir``, on disk. ``mode="patch"``
yields random 64x64 patch pairs (RED-CNN's patch size) with flips;
``mode="slice"`` yields full slices for evaluation. Items are dicts
``{"image": low (1,H,W), "target": normal (1,H,W), "id": str}`` in the models'
normalised units (``HU / 1000``).

Splits are by *volume* (:func:`split_by_volume`): volumes sharing a ``group``
(the same scan stored twice) always land on the same side, so no test slice
comes from a training scan.

Training (``medattn train`` with ``data.kind: ldct``, :func:`build_ldct`): the
builder's options (:class:`LDCTDataOptions`) come from ``data.options``; see
``configs/ldct_*.yaml`` and ``docs/denoising.md``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from medattn.errors import ConfigError, DatasetError, MedattnIOError

HU_MIN = -1024.0
_SLICE_SUFFIXES = (".tif", ".tiff", ".npy", ".png")


@dataclass
class CTVolume:
    """A CT volume in HU.

    Attributes:
        name: identifier used in splits and sample ids.
        hu: ``(Z, H, W)`` float32 Hounsfield units.
        spacing: in-plane pixel size ``(dy, dx)`` in mm (1.0 when unknown).
        source: the path it was read from.
        group: scan identity; volumes with the same group are never split apart.
        anatomy: free text (``chest``, ``head``, ``abdomen``) for transfer-learning splits.
    """

    name: str
    hu: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    source: str = ""
    group: str = ""
    anatomy: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group:
            self.group = self.name

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])


def _as_volume_array(path: Path, arr: np.ndarray, layout: str, original_dtype: str) -> np.ndarray:
    if layout not in ("HW", "ZHW"):
        raise MedattnIOError(path, f"not a CT image: expected gray slices, got layout {layout} (colour?)")
    vol = arr[None] if arr.ndim == 2 else arr
    return vol.astype(np.float32, copy=False)


def load_ct(path: str | os.PathLike[str], *, name: str | None = None, group: str | None = None,
            anatomy: str = "", allow_non_ct: bool = False) -> CTVolume:
    """Read a CT volume in HU from a DICOM series folder, DICOM/NIfTI file or a slice folder.

    A DICOM whose Modality is not CT is refused (``allow_non_ct`` overrides).
    """
    from medattn.io import read_dicom_series, read_image

    path = Path(path)
    if not path.exists():
        raise MedattnIOError(path, "no such file or directory")
    if path.is_dir():
        slices = sorted(p for p in path.iterdir() if p.suffix.lower() in _SLICE_SUFFIXES)
        if slices:
            data = [read_image(p) for p in slices]
            arrays = []
            for p, d in zip(slices, data, strict=True):
                a = d.array
                if a.ndim != 2:
                    raise MedattnIOError(p, f"slice folders hold 2-D gray slices; got shape {a.shape}")
                if a.dtype == np.uint8:
                    raise MedattnIOError(p, "8-bit image has no Hounsfield units; give DICOM, NIfTI, "
                                            "float/int16 TIFF or .npy slices in HU")
                # unsigned 16-bit exports store HU + 1024
                arrays.append(a.astype(np.float32) - (1024.0 if a.dtype == np.uint16 else 0.0))
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                raise MedattnIOError(path, f"slices differ in size: {sorted(shapes)}")
            spacing = data[0].meta.spacing
            image_hu = np.stack(arrays)
            meta_modality = "CT"
        else:
            d = read_dicom_series(path)
            image_hu = _as_volume_array(path, d.array, d.meta.layout, d.meta.original_dtype)
            spacing = d.meta.spacing
            meta_modality = d.meta.modality
    else:
        d = read_image(path)
        image_hu = _as_volume_array(path, d.array, d.meta.layout, d.meta.original_dtype)
        spacing = d.meta.spacing
        meta_modality = d.meta.modality
        if d.meta.format == "nifti" or path.name.endswith((".nii", ".nii.gz")):
            meta_modality = meta_modality or "CT"
    if meta_modality not in (None, "CT") and not allow_non_ct:
        raise MedattnIOError(path, f"modality is {meta_modality}, not CT")
    inplane = (float(spacing[-2]), float(spacing[-1])) if spacing else (1.0, 1.0)
    stem = path.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".dcm")
    vol = np.maximum(np.nan_to_num(image_hu, nan=HU_MIN), HU_MIN).astype(np.float32)
    return CTVolume(name=name or stem, hu=vol, spacing=inplane, source=str(path), group=group or "", anatomy=anatomy)


# -- the project's CT collection --------------------------------------------------------------

#: (name, path relative to the shared data root or "pydicom-data:<file>", group, anatomy, role)
CT_SOURCES: tuple[tuple[str, str, str, str, str], ...] = (
    ("ts_dicom", "ct/totalsegmentator-example/dicom", "ts_abdomen_dicom", "abdomen", "test"),
    ("ts_example_ct", "ct/totalsegmentator-example/example_ct.nii.gz", "ts_abdomen_nifti", "abdomen", "target"),
    ("ts_chest", "ct/totalsegmentator-example/chest_ct_cropped.nii.gz", "ts_chest", "chest", "pretrain"),
    ("pd_head_693", "pydicom-data:693_UNCR.dcm", "pd_head_693", "head", "pretrain"),
    ("pd_head_lv2", "pydicom-data:J2K_pixelrep_mismatch.dcm", "pd_head_lv2", "head", "pretrain"),
    ("pd_pancreas", "pydicom-data:explicit_VR-UN.dcm", "pd_pancreas", "abdomen", "val"),
)
"""Default split: ``test`` = the TotalSegmentator DICOM series (held out); ``target`` = abdomen
for fine-tuning; ``pretrain`` = other anatomy; ``val`` = one abdominal slice for model selection.
The NIfTI ``example_ct`` is a different scan from ``dicom/`` (other body habitus, arms out of
the field of view, 3 mm vs 0.98 mm grid, different table positions), checked by eye; they get
separate groups. Had they been the same scan, one group would keep them together."""


def pydicom_data_file(name: str) -> Path | None:
    """Path of a file shipped by ``pydicom-data`` or pydicom itself (never downloaded), or None."""
    folders = []
    try:
        import data_store  # the pydicom-data package's module

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    import pydicom

    folders.append(Path(pydicom.__file__).parent / "data" / "test_files")  # pydicom's own small files
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return None


def resample_inplane(vol: CTVolume, spacing_mm: float) -> CTVolume:
    """``vol`` resampled in-plane to square pixels of ``spacing_mm`` (bilinear, antialiased when shrinking).

    Low-dose noise depends on the pixel size (finer pixels: fewer photons per pixel,
    grainier noise), so a denoiser should be trained on the grid it will be used on:
    training pairs are simulated *after* resampling. The field of view is kept; HU values
    are interpolated, never rescaled. A volume already on the grid (within 1 %) is returned as is.
    """
    import torch
    import torch.nn.functional as F

    if spacing_mm <= 0:
        raise ValueError(f"spacing must be positive, got {spacing_mm}")
    dy, dx = vol.spacing
    if abs(dy - spacing_mm) <= 0.01 * spacing_mm and abs(dx - spacing_mm) <= 0.01 * spacing_mm:
        return vol
    _, h, w = vol.hu.shape
    size = (max(1, round(h * dy / spacing_mm)), max(1, round(w * dx / spacing_mm)))
    shrink = size[0] < h or size[1] < w
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(vol.hu, dtype=np.float32))[:, None]
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    hu = np.maximum(out[:, 0].numpy(), HU_MIN).astype(np.float32)
    meta = dict(vol.meta, original_spacing=vol.spacing)
    return CTVolume(name=vol.name, hu=hu, spacing=(float(spacing_mm), float(spacing_mm)), source=vol.source,
                    group=vol.group, anatomy=vol.anatomy, meta=meta)


def collection(roles: Iterable[str] | None = None, data_root: str | os.PathLike[str] | None = None,
               spacing: float | None = None) -> list[CTVolume]:
    """The project's CT volumes (see :data:`CT_SOURCES`) with the given roles; missing ones are skipped.

    ``spacing`` (mm) resamples every volume in-plane to that pixel size (:func:`resample_inplane`),
    e.g. the held-out series' 0.98 mm, so training noise matches the noise at use.
    """
    from medattn.utils.paths import shared_data_root

    root = Path(data_root) if data_root is not None else shared_data_root()
    wanted = set(roles) if roles is not None else None
    out = []
    for name, rel, group, anatomy, role in CT_SOURCES:
        if wanted is not None and role not in wanted:
            continue
        if rel.startswith("pydicom-data:"):
            path = pydicom_data_file(rel.split(":", 1)[1])
        else:
            path = root / rel if root is not None else None
        if path is None or not path.exists():
            continue
        out.append(_load_with_role(path, name=name, group=group, anatomy=anatomy, role=role, spacing=spacing))
    return out


def _load_with_role(path: str | os.PathLike[str], *, name: str | None, group: str | None, anatomy: str, role: str,
                    spacing: float | None) -> CTVolume:
    vol = load_ct(path, name=name, group=group, anatomy=anatomy)
    if spacing is not None:
        vol = resample_inplane(vol, spacing)
    vol.meta["role"] = role
    return vol


def split_by_volume(volumes: Sequence[CTVolume], test: Iterable[str] = (), val: Iterable[str] = (),
                    ratios: tuple[float, float, float] | None = None, seed: int = 0) -> dict[str, list[str]]:
    """Volume names per part (``train``/``val``/``test``), whole groups at a time.

    Either name the ``test`` / ``val`` volumes (their whole groups go there) or give
    ``ratios`` to shuffle groups with ``seed``. Raises if a group would straddle parts.
    """
    groups: dict[str, list[str]] = {}
    for v in volumes:
        groups.setdefault(v.group, []).append(v.name)
    by_name = {v.name: v for v in volumes}
    part_of: dict[str, str] = {}
    if ratios is not None:
        keys = sorted(groups)
        rng = np.random.default_rng(seed)
        rng.shuffle(keys)
        total = float(sum(ratios))
        n_test = round(len(keys) * ratios[2] / total)
        n_val = round(len(keys) * ratios[1] / total)
        for i, g in enumerate(keys):
            part_of[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    else:
        for part, names in (("test", test), ("val", val)):
            for n in names:
                if n not in by_name:
                    raise DatasetError(f"split: unknown volume {n!r}; known: {', '.join(sorted(by_name))}")
                g = by_name[n].group
                if part_of.get(g, part) != part:
                    raise DatasetError(f"split: volume {n!r} (group {g}) is asked for both {part_of[g]} and {part}")
                part_of[g] = part
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for g, names in groups.items():
        split[part_of.get(g, "train")].extend(sorted(names))
    return {k: sorted(v) for k, v in split.items()}


# -- pairs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationSettings:
    """Parameters of the low-dose simulation used for a dataset (see :mod:`medattn.denoise.simulate`).

    ``noise="reconstruct"`` reconstructs the whole low-dose slice (:func:`simulate_low_dose`);
    ``"insert"`` adds projection-domain noise alone to the normal-dose slice
    (:func:`simulate_noise`), as the AAPM/Mayo challenge made its quarter-dose scans. With
    ``"insert"``, ``dose_range`` draws each patch's dose log-uniformly (the noise simulated at
    ``dose`` is scaled by ``sqrt(dose / d)``), and ``kernels`` (``(filter, cutoff)`` pairs) are
    drawn per patch too, so one model learns a range of noise levels and textures (the noise is
    reconstructed once with the ramp filter, each kernel is applied to it in the image domain:
    :func:`medattn.denoise.simulate.apply_kernel`).
    """

    dose: float = 0.25
    i0: float = 2.0e6
    electronic_noise: float = 0.0
    n_angles: int | None = None
    filter_name: str = "ramp"
    cutoff: float = 1.0
    noise: str = "reconstruct"
    dose_range: tuple[float, float] | None = None
    kernels: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.noise not in ("reconstruct", "insert"):
            raise ValueError(f"noise must be 'reconstruct' or 'insert', got {self.noise!r}")
        if self.noise == "reconstruct" and (self.dose_range is not None or self.kernels):
            raise ValueError("a dose range or several kernels need noise='insert'")
        if self.dose_range is not None and not 0 < self.dose_range[0] <= self.dose_range[1]:
            raise ValueError(f"dose range must be 0 < low <= high, got {self.dose_range}")

    @property
    def kernel_list(self) -> tuple[tuple[str, float], ...]:
        return self.kernels or ((self.filter_name, self.cutoff),)

    def key(self) -> str:
        views = self.n_angles or "auto"
        base = f"d{self.dose:g}_i{self.i0:g}_e{self.electronic_noise:g}_a{views}"
        if self.noise == "reconstruct":
            cut = "" if self.filter_name == "ramp" or self.cutoff == 1.0 else f"{self.cutoff:g}"
            return f"{base}_{self.filter_name}{cut}"
        return f"{base}_insert"  # the ramp noise is cached; kernels are applied on loading


def _slice_seed(seed: int, name: str, z: int, settings: SimulationSettings) -> int:
    digest = hashlib.sha256(f"{seed}|{name}|{z}|{settings.key()}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _resize_pair(low: np.ndarray, clean: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Both squares resized to ``size`` (bilinear; antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.stack([low, clean]).astype(np.float32))[:, None]
    with torch.no_grad():
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=size < low.shape[0])
    return out[0, 0].numpy(), out[1, 0].numpy()


class LDCTPairs:
    """Simulated (low-dose, normal-dose) pairs from CT volumes; a torch-style map dataset.

    Args:
        volumes: the volumes (a split part).
        mode: ``"patch"`` (random ``patch_size`` crops, ``patches_per_epoch`` items) or ``"slice"``.
        settings: simulation parameters.
        seed: base seed of the simulation noise (and of the patch positions per epoch).
        slice_step: keep every n-th slice (adjacent thin slices are nearly identical).
        min_body_fraction: skip slices whose share of pixels above -500 HU is lower.
        cache_dir: keep simulated slices as ``.npy`` files there, reused across runs.
        augment: random flips / 90-degree turns of patches.
        min_size: skip slices smaller than this on either side (e.g. to train on full-resolution CT only).
        patch_spacing: ``(low, high)`` mm: each patch is cut from a square of ``patch_size x s / spacing``
            pixels and resized (clean and noisy alike, bilinear, antialiased when shrinking) to
            ``patch_size``, for a pixel size ``s`` drawn uniformly in the range. The inserted noise is a
            field of fixed texture in cycles/mm (set by the kernel, as on a scanner, where the
            reconstruction grid only samples it), so resampling it gives that grid's noise.
    """

    def __init__(self, volumes: Sequence[CTVolume], mode: str = "patch", settings: SimulationSettings | None = None,
                 *, seed: int = 0, patch_size: int = 64, patches_per_epoch: int = 4096, slice_step: int = 1,
                 min_body_fraction: float = 0.05, cache_dir: str | os.PathLike[str] | None = None,
                 augment: bool = True, progress: bool = False, min_size: int = 0,
                 patch_spacing: tuple[float, float] | None = None) -> None:
        if mode not in ("patch", "slice"):
            raise ValueError(f"mode must be 'patch' or 'slice', got {mode!r}")
        if patch_spacing is not None and (settings is None or settings.noise != "insert"):
            raise ValueError("patch_spacing needs noise='insert' (the noise field is resampled with the image)")
        self.patch_spacing = patch_spacing
        self.volumes = list(volumes)
        self.mode = mode
        self.settings = settings or SimulationSettings()
        self.seed = seed
        self.patch_size = int(patch_size)
        self.patches_per_epoch = int(patches_per_epoch)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.augment = augment
        self.epoch = 0
        self.index: list[tuple[int, int]] = []
        for vi, vol in enumerate(self.volumes):
            for z in range(0, vol.n_slices, max(1, slice_step)):
                sl = vol.hu[z]
                if (mode == "patch" and min(sl.shape) < self.patch_size) or min(sl.shape) < min_size:
                    continue
                if float((sl > -500).mean()) < min_body_fraction:
                    continue
                self.index.append((vi, z))
        if not self.index:
            raise DatasetError("no usable CT slice (all too small for the patch size or without anatomy)")
        self._low: dict[tuple[int, int], np.ndarray] = {}
        if progress:
            self.prepare(progress=True)

    # the simulated slices -------------------------------------------------------------------
    def _cache_file(self, vi: int, z: int) -> Path | None:
        if self.cache_dir is None:
            return None
        vol = self.volumes[vi]
        tag = hashlib.sha256(f"{vol.source}|{vol.hu.shape}|{float(vol.hu[z].sum()):.6g}".encode()).hexdigest()[:12]
        return self.cache_dir / self.settings.key() / f"{vol.name}_{z:04d}_s{self.seed}_{tag}.npy"

    def low_dose(self, vi: int, z: int) -> np.ndarray:
        """The simulated low-dose slice ``z`` of volume ``vi`` at the settings' dose and first kernel (HU)."""
        sim = self._simulated(vi, z)
        return sim if self.settings.noise == "reconstruct" else self.volumes[vi].hu[z] + sim[0]

    def _simulated(self, vi: int, z: int) -> np.ndarray:
        """``reconstruct``: the low-dose slice (H, W); ``insert``: its noise per kernel (K, H, W). Computed once."""
        key = (vi, z)
        if key in self._low:
            return self._low[key]
        s = self.settings
        low = self._cached_simulation(vi, z)
        if s.noise == "insert":
            from medattn.denoise.simulate import apply_kernel

            # the noise is reconstructed once with the ramp filter; each kernel is applied to it in
            # the image domain (exact in the continuous limit, see apply_kernel): kernels cost no FBP
            low = np.stack([low if f == "ramp" else apply_kernel(low, c) for f, c in s.kernel_list])
        self._low[key] = low
        return low

    def _cached_simulation(self, vi: int, z: int) -> np.ndarray:
        """The simulation of one slice, from the disk cache when there: the low-dose slice, or its ramp noise."""
        s = self.settings
        shape = self.volumes[vi].hu[z].shape
        path = self._cache_file(vi, z)
        if path is not None and path.is_file():
            try:
                low = np.load(path)
            except (OSError, ValueError):
                low = None
            if low is not None and low.shape == shape:
                return low
        from medattn.denoise.simulate import simulate_low_dose, simulate_noise

        vol = self.volumes[vi]
        common = {"i0": s.i0, "electronic_noise": s.electronic_noise,
                  "pixel_size_mm": float(np.sqrt(vol.spacing[0] * vol.spacing[1])), "n_angles": s.n_angles,
                  "seed": _slice_seed(self.seed, vol.name, z, s)}
        if s.noise == "reconstruct":
            low = simulate_low_dose(vol.hu[z], s.dose, filter_name=s.filter_name, cutoff=s.cutoff, **common)
        else:
            low = simulate_noise(vol.hu[z], s.dose, kernels=(("ramp", 1.0),), **common)[0]
        if path is not None:
            from medattn.utils.fileio import atomic_path

            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, low)
        return low

    def prepare(self, progress: bool = True) -> None:
        """Simulate every slice now (with a progress bar) instead of on first use."""
        from rich.progress import track

        items = track(self.index, description="simulating low dose") if progress else self.index
        for vi, z in items:
            self._simulated(vi, z)

    # dataset protocol ---------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_random_state(self, seed: int) -> None:
        """New patch positions for an epoch: the engine calls this with the epoch's seed."""
        self.set_epoch(seed)

    def __len__(self) -> int:
        return self.patches_per_epoch if self.mode == "patch" else len(self.index)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Full-slice pair ``(low_hu, normal_hu, id)`` of index entry ``i``."""
        vi, z = self.index[i]
        return self.low_dose(vi, z), self.volumes[vi].hu[z], f"{self.volumes[vi].name}/{z:04d}"

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        if self.mode == "slice":
            low, clean, sid = self.pair(i)
        else:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            j = int(rng.integers(len(self.index)))
            vi, z = self.index[j]
            vol = self.volumes[vi]
            clean_full = vol.hu[z]
            p = self.patch_size
            h, w = clean_full.shape
            side = p
            if self.patch_spacing is not None:
                target = float(rng.uniform(*self.patch_spacing))
                side = min(h, w, max(8, round(p * target / float(np.sqrt(vol.spacing[0] * vol.spacing[1])))))
            y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            clean = clean_full[y : y + side, x : x + side]
            s = self.settings
            if s.noise == "insert":
                noise = self._simulated(vi, z)
                k = int(rng.integers(noise.shape[0])) if noise.shape[0] > 1 else 0
                scale = 1.0
                if s.dose_range is not None:
                    d = float(np.exp(rng.uniform(np.log(s.dose_range[0]), np.log(s.dose_range[1]))))
                    scale = float(np.sqrt(s.dose / d))
                low = clean + scale * noise[k, y : y + side, x : x + side]
            else:
                low = self._simulated(vi, z)[y : y + side, x : x + side]
            if side != p:
                low, clean = _resize_pair(low, clean, p)
            if self.augment:
                k = int(rng.integers(4))
                flip = bool(rng.integers(2))
                low, clean = np.rot90(low, k), np.rot90(clean, k)
                if flip:
                    low, clean = low[:, ::-1], clean[:, ::-1]
            sid = f"{self.volumes[vi].name}/{z:04d}@{y},{x}"
        from medattn.models.ldct_denoisers import HU_SCALE

        return {
            "image": torch.from_numpy(np.ascontiguousarray(low, dtype=np.float32)[None] / HU_SCALE),
            "target": torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32)[None] / HU_SCALE),
            "id": sid,
        }


# -- training with the engine (``medattn train``, ``data.kind: ldct``) ----------------------------


class VolumeSpec(BaseModel):
    """One CT volume of ``data.options.volumes`` (instead of the project's collection)."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="DICOM series folder, DICOM/NIfTI file or folder of HU slices")
    role: str = Field("target", description="matched against train_roles / val_roles")
    anatomy: str = ""
    name: str | None = Field(None, description="default: the file or folder name")
    group: str | None = Field(None, description="scan identity (default: the name); never split apart")


class LDCTDataOptions(BaseModel):
    """``data.options`` of ``data.kind: ldct`` (every default here)."""

    model_config = ConfigDict(extra="forbid")

    train_roles: list[str] = Field(default_factory=lambda: ["pretrain", "target"],
                                   description="roles of the training volumes (CT_SOURCES or volumes)")
    val_roles: list[str] = Field(default_factory=lambda: ["val"], description="roles of the validation volumes "
                                                                                  "(full slices; [] = none)")
    train_names: list[str] | None = Field(None, description="train on these volumes (CT_SOURCES or volumes names) "
                                                            "instead of those with train_roles")
    dose: float | tuple[float, float] = Field(0.25, description="simulated dose fraction, or a [low, high] range "
                                                                "drawn log-uniformly per patch (needs noise: insert)")
    i0: float = Field(2.0e6, gt=0.0, description="incident photons per ray at full dose")
    noise: str = Field("reconstruct", pattern="^(reconstruct|insert)$",
                       description="reconstruct the low-dose slice, or insert projection-domain noise into "
                                   "the normal-dose slice (the AAPM/Mayo way)")
    kernels: list[tuple[str, float]] = Field(default_factory=lambda: [("ramp", 1.0)],
                                             description="reconstruction kernels [filter, cutoff] (ramp | hann); "
                                                         "several are drawn per patch (needs noise: insert)")
    electronic_noise: float = Field(0.0, ge=0.0, description="Gaussian electronic noise (SD, counts)")
    patch_size: int = Field(64, ge=8, description="training patch side (also the card's input size)")
    patches_per_epoch: int = Field(2048, ge=1, description="random patches per epoch (= one epoch's length)")
    slice_step: int = Field(2, ge=1, description="use every n-th slice")
    min_slice_size: int = Field(0, ge=0, description="skip slices smaller than this on either side")
    spacing: float | None = Field(None, gt=0.0, description="resample volumes in-plane to this pixel size (mm) "
                                                            "before simulating (the grid the model will be used on)")
    patch_spacing: tuple[float, float] | None = Field(
        None, description="[low, high] mm: each training patch is resampled (clean and noisy alike) to a pixel size "
                          "drawn in this range, so one model serves those grids (needs noise: insert)")
    val_pairs: Path | None = Field(None, description="folder of real low/normal-dose pairs (*_quarter_hu.npy + "
                                                      "*_full_hu.npy) to validate on instead of simulated val_roles")
    val_pairs_spacing: float = Field(0.7421875, gt=0.0, description="pixel size (mm) of the val_pairs slices")
    cache_dir: Path | None = Field(Path("runs/ldct_cache"), description="simulated slices kept as .npy "
                                                                         "(null = memory only)")
    data_root: Path | None = Field(None, description="root of CT_SOURCES (default: ../shared/data)")
    volumes: list[VolumeSpec] | None = Field(None, description="your own CT volumes instead of CT_SOURCES")
    seed: int = Field(0, description="seed of the simulated noise (fixed, so the cache is shared between runs)")
    window: tuple[float, float] = Field((40.0, 400.0), description="HU window (center, width) of val_psnr")


    @field_validator("dose", "patch_spacing")
    @classmethod
    def _positive(cls, v: Any, info: ValidationInfo) -> Any:
        values = v if isinstance(v, tuple) else (v,)
        if any(x is not None and x <= 0 for x in values):
            raise ValueError("must be positive")
        if info.field_name == "dose" and max(values) > 1:
            raise ValueError("dose fractions are at most 1")
        if isinstance(v, tuple) and v[0] > v[1]:
            raise ValueError(f"range [{v[0]}, {v[1]}] must be [low, high]")
        return v

    @model_validator(mode="after")
    def _insert_for_ranges(self) -> LDCTDataOptions:
        if self.noise != "insert" and (isinstance(self.dose, tuple) or len(self.kernels) > 1 or self.patch_spacing):
            raise ValueError("a dose range, several kernels or a patch_spacing range need noise: insert")
        for f, c in self.kernels:
            if f not in ("ramp", "hann") or not 0 < c <= 16:
                raise ValueError(f"kernel [{f}, {c}]: filter is ramp or hann, cutoff in (0, 16]")
        return self

    def simulation(self) -> SimulationSettings:
        """The simulation these options describe (the reference dose of a range is its geometric mean)."""
        rng = self.dose if isinstance(self.dose, tuple) else None
        dose = float(np.sqrt(rng[0] * rng[1])) if rng else float(self.dose)
        kernels = tuple((f, float(c)) for f, c in self.kernels)
        if self.noise == "reconstruct":
            return SimulationSettings(dose=dose, i0=self.i0, electronic_noise=self.electronic_noise,
                                      filter_name=kernels[0][0], cutoff=kernels[0][1])
        return SimulationSettings(dose=dose, i0=self.i0, electronic_noise=self.electronic_noise, noise="insert",
                                  dose_range=rng, kernels=kernels)

    def trained_grid(self) -> float | tuple[float, float] | None:
        """The pixel size(s) in mm the model learns to denoise (the card's ``spacing_mm``)."""
        return self.patch_spacing if self.patch_spacing is not None else self.spacing


#: losses that make sense for image-to-image training
RESTORATION_LOSSES = ("mse", "l1", "ssim")


def ct_window_scores(window: tuple[float, float] = (40.0, 400.0)) -> Any:
    """Per-sample validation scores on normalised HU (``HU / 1000``) tensors.

    ``psnr``: in the HU ``window`` (both images clipped to it, its width as the range, as
    :func:`medattn.metrics.psnr` with ``window``); ``rmse_hu``: over the whole image, in HU.
    """
    import torch

    from medattn.models.ldct_denoisers import HU_SCALE

    center, width = window
    lo, hi = (center - width / 2) / HU_SCALE, (center + width / 2) / HU_SCALE

    def scores(outputs: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        out, tgt = outputs.float(), target.float()
        mse_w = ((out.clamp(lo, hi) - tgt.clamp(lo, hi)) ** 2).flatten(1).mean(1)
        rmse = ((out - tgt) ** 2).flatten(1).mean(1).sqrt() * HU_SCALE
        return {"psnr": 10 * torch.log10((hi - lo) ** 2 / mse_w.clamp_min(1e-12)), "rmse_hu": rmse}

    return scores


def ldct_options(options: dict[str, Any]) -> LDCTDataOptions:
    """Validate ``data.options`` (one-line :class:`ConfigError` naming the setting)."""
    from medattn.training.config import condense

    try:
        return LDCTDataOptions.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(condense(exc, prefix="data.options.")) from None


def _role_volumes(o: LDCTDataOptions, roles: Sequence[str], names: Sequence[str] | None = None) -> list[CTVolume]:
    """The volumes with ``roles`` (or named ``names``), resampled to ``o.spacing`` when set."""
    if o.volumes is None:
        vols = collection(None if names is not None else roles, o.data_root, spacing=o.spacing)
    else:
        vols = [_load_with_role(v.path, name=v.name, group=v.group, anatomy=v.anatomy, role=v.role, spacing=o.spacing)
                for v in o.volumes if names is not None or v.role in roles]
    if names is not None:
        missing = sorted(set(names) - {v.name for v in vols})
        if missing:
            raise ConfigError(f"data.options.train_names: no CT volume named {missing} (is ../shared/data there?)")
        vols = [v for v in vols if v.name in names]
    return vols


class RealLDCTPairs:
    """Real (low-dose, normal-dose) slice pairs for validation: ``<id>_quarter_hu.npy`` + ``<id>_full_hu.npy``.

    The AAPM/Mayo layout of ``../shared/data/ct/mayo-l506-real``. Items are full slices in the
    models' units (``HU / 1000``), like :class:`LDCTPairs` in ``"slice"`` mode.
    """

    def __init__(self, folder: str | os.PathLike[str], spacing: float) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise MedattnIOError(folder, "no such folder of real low/normal-dose pairs")
        self.folder, self.spacing = folder, float(spacing)
        self.ids = sorted(p.name.removesuffix("_full_hu.npy") for p in folder.glob("*_full_hu.npy")
                          if (folder / p.name.replace("_full_hu", "_quarter_hu")).is_file())
        if not self.ids:
            raise MedattnIOError(folder, "no *_full_hu.npy with a matching *_quarter_hu.npy")

    def __len__(self) -> int:
        return len(self.ids)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """``(low_hu, normal_hu, id)`` of pair ``i``."""
        sid = self.ids[i]
        arrays = []
        for kind in ("quarter", "full"):
            path = self.folder / f"{sid}_{kind}_hu.npy"
            a = np.load(path).astype(np.float32)
            if a.ndim != 2 or not np.isfinite(a).all():
                raise MedattnIOError(path, f"expected one finite HU slice, got shape {a.shape}")
            arrays.append(a)
        if arrays[0].shape != arrays[1].shape:
            raise MedattnIOError(self.folder / sid, f"quarter {arrays[0].shape} and full {arrays[1].shape} differ")
        return arrays[0], arrays[1], sid

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        from medattn.models.ldct_denoisers import HU_SCALE

        low, clean, sid = self.pair(i)
        return {"image": torch.from_numpy(low[None] / HU_SCALE), "target": torch.from_numpy(clean[None] / HU_SCALE),
                "id": sid}


def build_ldct(cfg: Any) -> Any:
    """``data.kind: ldct``: simulated (low-dose, normal-dose) pairs for a denoiser.

    Training: ``patches_per_epoch`` random ``patch_size`` patches per epoch (new positions
    every epoch), validation: the full slices of the ``val_roles`` volumes, one at a time,
    scored by :func:`ct_window_scores` (``val_psnr`` in the HU window, ``val_rmse_hu``).
    The cards record the input size (= the patch size), the ``HU / 1000`` normalisation
    and the volumes used.
    """
    import sys

    from medattn.models import model_info
    from medattn.training.data import DataBundle

    o = ldct_options(cfg.data.options)
    info = model_info(cfg.model.name)
    if info.task != "denoising":
        raise ConfigError(f"data.kind ldct trains denoisers; model.name {cfg.model.name!r} is a {info.task} model")
    if cfg.loss.name not in RESTORATION_LOSSES:
        raise ConfigError(f"data.kind ldct: loss.name {cfg.loss.name!r} is not an image-to-image loss; "
                          f"use {' | '.join(RESTORATION_LOSSES)} (the denoisers are trained with mse)")
    if o.volumes is not None:
        for v in o.volumes:
            if not v.path.exists():
                raise ConfigError(f"data.options.volumes: {v.path}: no such file or folder")
    settings = o.simulation()
    train_vols = _role_volumes(o, o.train_roles, names=o.train_names)
    if not train_vols:
        where = "data.options.volumes" if o.volumes is not None else "CT_SOURCES (is ../shared/data there?)"
        raise ConfigError(f"data.options.train_roles: no CT volume with roles {o.train_roles} in {where}")
    val_vols = _role_volumes(o, o.val_roles) if o.val_roles and o.val_pairs is None else []
    overlap = {v.group for v in train_vols} & {v.group for v in val_vols}
    if overlap:
        raise ConfigError(f"data.options: scans {sorted(overlap)} are in both training and validation")
    progress = sys.stderr.isatty()
    train = LDCTPairs(train_vols, "patch", settings, seed=o.seed, patch_size=o.patch_size,
                      patches_per_epoch=o.patches_per_epoch, slice_step=o.slice_step, cache_dir=o.cache_dir,
                      min_size=o.min_slice_size, patch_spacing=o.patch_spacing)
    train.prepare(progress=progress)
    val: Any = None
    if o.val_pairs is not None:
        try:
            val = RealLDCTPairs(o.val_pairs, o.val_pairs_spacing)
        except MedattnIOError as exc:
            raise ConfigError(f"data.options.val_pairs: {exc}") from None
    elif val_vols:
        val = LDCTPairs(val_vols, "slice", settings, seed=o.seed, cache_dir=o.cache_dir)
        val.prepare(progress=progress)
    simulation: dict[str, Any] = {"dose": o.dose, "i0": o.i0, "spacing_mm": o.trained_grid()}
    if o.patch_spacing is not None:
        simulation["simulated_at_mm"] = o.spacing
    if o.noise == "insert" or o.kernels != [("ramp", 1.0)] or o.electronic_noise:
        simulation.update(noise=o.noise, kernels=[list(k) for k in o.kernels], electronic_noise=o.electronic_noise)
    card = {"normalisation": "HU / 1000", "predicts": "clean image (residual: input - noise)",
            "simulation": simulation,
            "volumes": {"train": [v.name for v in train_vols],
                        "val": [v.name for v in val_vols] if o.val_pairs is None else
                        [f"real:{o.val_pairs.name}/{i}" for i in val.ids]}}
    return DataBundle(train=train, val=val, target_key="target", val_batch_size=1,
                      scores=ct_window_scores(o.window), input_size=(o.patch_size, o.patch_size), card=card)
