"""Mask exports of a finished case: PNG, NIfTI, and DICOM-SEG (highdicom) for DICOM inputs.

The pipeline stores the full mask as ``mask_volume.npy`` ((H, W) or (Z, H, W),
uint8 0/1) and, for DICOM input, ``case.meta["slice_files"]``: the stored
de-identified slices in the order of the mask's first axis.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from fastapi import HTTPException

from medattn import __version__
from medattn.app.db import Case
from medattn.app.storage import CaseStore
from medattn.errors import MedattnError


def _mask(case: Case, store: CaseStore) -> np.ndarray:
    names = {f.name for f in case.files}
    if "mask_volume.npy" not in names:
        raise HTTPException(404, "this case has no mask (its pipeline does not segment)")
    return np.load(store.path(case.id, "mask_volume.npy"), allow_pickle=False)


class ExportError(MedattnError):
    """An export could not be built; the message names the case file and the reason (HTTP 422)."""


def export_mask(case: Case, store: CaseStore, fmt: str) -> tuple[bytes, str, str]:
    """(bytes, media type, file name) of the case mask in format ``fmt``.

    Refusals that are the request's fault raise :class:`HTTPException` (404/409); anything else that goes
    wrong while building the export raises :class:`ExportError` naming the file and the reason.
    """
    try:
        return _export(case, store, fmt)
    except (HTTPException, ExportError):
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ExportError(f"{_where(case, fmt)} failed: {type(exc).__name__}: {reason}") from exc


def _where(case: Case, fmt: str) -> str:
    return f"{fmt} export of case {case.id[:8]} ({case.input_name or 'input'})"


def _export(case: Case, store: CaseStore, fmt: str) -> tuple[bytes, str, str]:
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


def _with_uids(ds: Any, case_id: str, name: str) -> Any:
    """Fill the UIDs a DICOM-SEG must reference when the (de-identified) source has them empty.

    Generated from the case id (study, series) and the slice file name (instance), so the slices of one
    series agree and a repeated export references the same UIDs.
    """
    from pydicom.uid import CTImageStorage, SecondaryCaptureImageStorage, generate_uid

    if not str(ds.get("SOPClassUID", "") or ""):
        ds.SOPClassUID = CTImageStorage if ds.get("Modality") == "CT" else SecondaryCaptureImageStorage
    for kw, entropy in (("StudyInstanceUID", [case_id, "study"]), ("SeriesInstanceUID", [case_id, "series"]),
                        ("SOPInstanceUID", [case_id, name])):
        if not str(ds.get(kw, "") or ""):
            setattr(ds, kw, generate_uid(entropy_srcs=entropy))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _dicom_seg(case: Case, store: CaseStore, mask: np.ndarray) -> bytes:
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    files = case.meta.get("slice_files") or [f.name for f in case.files if f.kind == "input"]
    sources = [_with_uids(pydicom.dcmread(store.path(case.id, n)), case.id, n) for n in files]
    vol = mask if mask.ndim == 3 else mask[None]
    if len(sources) != vol.shape[0]:
        raise ExportError(f"{_where(case, 'dicom-seg')}: the mask has {vol.shape[0]} slices "
                          f"but the input {len(sources)}")
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
