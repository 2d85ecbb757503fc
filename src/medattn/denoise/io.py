"""Write denoised CT back in its input's format: DICOM (per slice, series kept together), NIfTI, PNG/TIFF.

DICOM out keeps every tag of the input slice (geometry, patient/study, window,
``RescaleSlope``/``RescaleIntercept``) and changes only what a derived image
must change: new ``SOPInstanceUID`` (and the file meta's copy), one new
``SeriesInstanceUID`` per output series, ``ImageType`` ``DERIVED\\SECONDARY\\...``,
a ``SeriesDescription`` suffix and a ``DerivationDescription``. Pixel values are
re-encoded with the original rescale into the original stored dtype (clipped to
its range), uncompressed (Explicit VR Little Endian). All writes are atomic.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import MedattnIOError
from medattn.utils.fileio import atomic_path

DERIVED_SUFFIX = " [medattn denoised]"


def new_series_uid() -> str:
    """A fresh DICOM UID for an output series."""
    from pydicom.uid import generate_uid

    return str(generate_uid())


def _stored_range(ds: Any) -> tuple[np.dtype, int, int]:
    bits_alloc = int(ds.get("BitsAllocated", 16))
    bits_stored = int(ds.get("BitsStored", bits_alloc))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits_alloc // 8}")
    lo, hi = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    return dtype, lo, hi


def encode_hu(hu: np.ndarray, ds: Any) -> np.ndarray:
    """Stored pixel values for ``hu`` under ``ds``'s rescale and pixel format (rounded, clipped)."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    dtype, lo, hi = _stored_range(ds)
    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    return np.clip(stored, lo, hi).astype(dtype)


def write_dicom_slice(path: str | os.PathLike[str], hu: np.ndarray, source: Any, series_uid: str,
                      description: str = DERIVED_SUFFIX, derivation: str = "medattn LDCT denoising") -> Path:
    """Write one derived DICOM slice at ``path`` from ``source`` (a pydicom Dataset or a DICOM file path)."""
    import pydicom
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    path = Path(path)
    if isinstance(source, (str, os.PathLike)):
        try:
            ds = pydicom.dcmread(source, stop_before_pixels=True)
        except Exception as exc:
            raise MedattnIOError(source, f"cannot read DICOM header ({exc})") from exc
    else:
        ds = copy.deepcopy(source)
    hu = np.asarray(hu)
    if hu.ndim != 2:
        raise MedattnIOError(path, f"one DICOM slice holds a 2-D image, got shape {hu.shape}")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise MedattnIOError(path, "multi-frame DICOM output is not supported; give a series of single-frame files")
    if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != hu.shape:
        raise MedattnIOError(path, f"image {hu.shape} does not match the source header "
                                   f"{ds.get('Rows')}x{ds.get('Columns')}")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise MedattnIOError(path, "only gray (one sample per pixel) DICOM can be written as CT")
    for kw in ("PixelData", "SmallestImagePixelValue", "LargestImagePixelValue", "LossyImageCompression",
               "LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        if kw in ds:
            delattr(ds, kw)
    stored = encode_hu(hu, ds)
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<"), copy=False).tobytes()
    ds["PixelData"].VR = "OW" if stored.dtype.itemsize > 1 else "OB"
    image_type = [str(v) for v in ds.get("ImageType", [])]
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = (str(ds.get("SeriesDescription", "")) + description)[:64]
    ds.DerivationDescription = derivation[:1024]
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        from pydicom.dataset import FileMetaDataset

        meta = FileMetaDataset()
        ds.file_meta = meta
    # some archives drop SOPClassUID from the dataset and keep it only in the file meta
    sop_class = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID") or CTImageStorage
    ds.SOPClassUID = sop_class
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def write_nifti_like(path: str | os.PathLike[str], volume_xyz: np.ndarray, source: str | os.PathLike[str]) -> Path:
    """Write ``volume_xyz`` (nibabel's axis order) with the source NIfTI's affine and header.

    Integer sources without scaling get rounded, clipped values of their own dtype; others keep
    the header's data type and nibabel picks the scaling.
    """
    import nibabel as nib

    src = nib.load(str(source))
    header = src.header.copy()
    dtype = np.dtype(header.get_data_dtype())
    slope, inter = src.dataobj.slope, src.dataobj.inter
    data = np.asarray(volume_xyz, dtype=np.float64)
    if dtype.kind in "iu" and slope in (1.0, None) and inter in (0.0, None):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max).astype(dtype)
    img = type(src)(data, src.affine, header)
    img.set_qform(src.get_qform(), int(src.header["qform_code"]))
    img.set_sform(src.get_sform(), int(src.header["sform_code"]))
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
