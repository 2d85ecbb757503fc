"""Mask exports of a finished case: PNG, NIfTI, and DICOM-SEG (highdicom) for DICOM inputs.

The pipeline stores the full mask as ``mask_volume.npy`` ((H, W) or (Z, H, W),
uint8 0/1) and, for DICOM input, ``case.meta["slice_files"]``: the stored
de-identified slices in the order of the mask's first axis.
"""

from __future__ import annotations

import io

import numpy as np
from fastapi import HTTPException

from medattn import __version__
from medattn.app.db import Case
from medattn.app.storage import CaseStore


def _mask(case: Case, store: CaseStore) -> np.ndarray:
    names = {f.name for f in case.files}
    if "mask_volume.npy" not in names:
        raise HTTPException(404, "this case has no mask (its pipeline does not segment)")
    return np.load(store.path(case.id, "mask_volume.npy"), allow_pickle=False)


def export_mask(case: Case, store: CaseStore, fmt: str) -> tuple[bytes, str, str]:
    """(bytes, media type, file name) of the case mask in format ``fmt``."""
    stem = f"medattn-{case.id[:8]}-mask"
    if fmt == "png":
        f = next((f for f in case.files if f.kind == "mask"), None)
        if f is None:
            raise HTTPException(404, "this case has no mask (its pipeline does not segment)")
        return store.path(case.id, f.name).read_bytes(), "image/png", f"{stem}.png"
    if fmt == "nifti":
        return _nifti(case, _mask(case, store)), "application/gzip", f"{stem}.nii.gz"
    if fmt == "dicom-seg":
        if case.input_format not in ("dicom", "dicom-series"):
            raise HTTPException(409, "DICOM-SEG needs a DICOM input")
        return _dicom_seg(case, store, _mask(case, store)), "application/dicom", f"{stem}.dcm"
    raise HTTPException(404, f"unknown export format {fmt!r}; use png, nifti or dicom-seg")


def _nifti(case: Case, mask: np.ndarray) -> bytes:
    import nibabel as nib

    affine = case.meta.get("affine")
    if affine is not None:
        affine = np.asarray(affine, dtype=float)
    vol = mask if mask.ndim == 3 else mask[None]
    # medattn arrays are (Z, Y, X); NIfTI voxel order is (i=x, j=y, k=z).
    data = np.ascontiguousarray(np.transpose(vol, (2, 1, 0))).astype(np.uint8)
    if affine is None:
        sp = case.results.get("spacing") or [1.0] * mask.ndim
        sz, sy, sx = [1.0, *sp] if len(sp) == 2 else list(sp)
        affine = np.diag([sx, sy, sz, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    return _gz(img)


def _gz(img) -> bytes:
    import gzip

    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=6)


def _dicom_seg(case: Case, store: CaseStore, mask: np.ndarray) -> bytes:
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    files = case.meta.get("slice_files") or [f.name for f in case.files if f.kind == "input"]
    sources = [pydicom.dcmread(store.path(case.id, n)) for n in files]
    vol = mask if mask.ndim == 3 else mask[None]
    if len(sources) != vol.shape[0]:
        raise HTTPException(500, "mask and source slices disagree")
    algo = hd.AlgorithmIdentificationSequence(
        name=case.model_name or "medattn", version=case.model_version or __version__,
        family=codes.cid7162.ArtificialIntelligence,
    )
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=vol.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc],
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medattn",
        manufacturer_model_name=case.model_name or "medattn",
        software_versions=__version__,
        device_serial_number="none",
    )
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()
