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
    """The mask as a (Z, H, W) volume through medattn.io's NIfTI writer (input affine, else spacing)."""
    import tempfile
    from pathlib import Path

    from medattn.app.viewer import to_file_order
    from medattn.io import ImageMeta, write_image

    vol = (mask if mask.ndim == 3 else mask[None]).astype(np.uint8)
    vol = to_file_order(vol, case.meta.get("display_orientation"))  # the input file's voxel order and affine
    affine = case.meta.get("affine")
    spacing = case.results.get("spacing")
    if spacing is not None and len(spacing) == 2:
        spacing = [1.0, *spacing]
    meta = ImageMeta(spacing=tuple(spacing) if spacing else None, layout="ZHW",
                     affine=np.asarray(affine, dtype=float) if affine is not None else None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mask.nii.gz"
        write_image(path, vol, meta)
        return path.read_bytes()


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
