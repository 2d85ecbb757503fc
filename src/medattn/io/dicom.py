"""DICOM through pydicom: single files, multi-frame files and series folders.

Values: the Modality LUT is applied, so CT is in Hounsfield units (``HU = stored x
RescaleSlope + RescaleIntercept``, per frame for enhanced multi-frame files whose
rescale sits in the functional groups); the array is float32 whenever a rescale
or LUT changed the values, else it keeps the stored dtype. MONOCHROME1 values are
left as stored (``meta.extra["photometric"]`` says so; ``read_gray`` inverts them);
palette colour is expanded to RGB; YCbCr is converted to RGB by pydicom.

Spacing (mm, array-axis order): ``PixelSpacing`` (row, column) = ``(dy, dx)``, else
``ImagerPixelSpacing`` (projection radiographs); for volumes ``dz`` is the distance
between consecutive slice positions along the slice normal, else
``SpacingBetweenSlices``, else ``SliceThickness``.

A series folder is sorted by ``ImagePositionPatient`` projected on the slice normal
(``ImageOrientationPatient`` row x column), ascending; without positions, by
``InstanceNumber``. ``meta.dicom`` is the first slice's header (pixel data removed);
``meta.extra["dicom_headers"]`` and ``["files"]`` list every slice in array order.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import MedattnIOError
from medattn.io.base import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    ImageMeta,
    ImageReader,
    ImageWriter,
    check_pixels,
    finalize,
    register_reader,
    register_writer,
    resolve_max_pixels,
)
from medattn.utils.fileio import atomic_path

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic", ".ima")


def _reason(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]


def is_dicom_head(head: bytes) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def is_raw_dicom_head(head: bytes) -> bool:
    """Weak check for a DICOM dataset without preamble: starts with a group 0002/0008 element."""
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR
        return True
    length = int.from_bytes(head[4:8], "little")  # implicit VR: a plausible element length
    return length < 1 << 16


def _read_dataset(path: Path, *, force: bool, stop_before_pixels: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, force=force, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError as exc:
            raise MedattnIOError(path, f"not a valid DICOM file ({_reason(exc)})") from None
        except (EOFError, ValueError, KeyError, TypeError, OSError, NotImplementedError) as exc:
            raise MedattnIOError(path, f"DICOM file is truncated or corrupt ({_reason(exc)})") from None
    if any("EOF" in str(w.message) or "end of file" in str(w.message).lower() for w in caught):
        raise MedattnIOError(path, "DICOM file is truncated (the file ends inside a data element)")
    if len(ds) == 0:
        raise MedattnIOError(path, "not a valid DICOM file (no data elements after the header)")
    _ensure_transfer_syntax(ds)
    if not stop_before_pixels:
        last = ds.get_item(max(ds.keys()))
        value, length = getattr(last, "value", None), getattr(last, "length", None)
        if isinstance(value, bytes) and isinstance(length, int) and length != 0xFFFFFFFF and len(value) < length:
            raise MedattnIOError(
                path, f"DICOM file is truncated ({len(value):,} of {length:,} bytes of its last element present)"
            )
    return ds


def _ensure_transfer_syntax(ds: Any) -> None:
    """Files without a Part 10 header carry no Transfer Syntax UID: record the encoding pydicom parsed."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _has_pixels(ds: Any) -> bool:
    return any(kw in ds for kw in _PIXEL_KEYWORDS)


def _no_pixel_data(path: Path, ds: Any) -> MedattnIOError:
    sop = ds.get("SOPClassUID")
    kind = f" ({sop.name})" if sop is not None and hasattr(sop, "name") else ""
    return MedattnIOError(path, f"DICOM file has no pixel data{kind}")


def _frames(ds: Any) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _functional(ds: Any, seq: str, frame: int | None = None) -> Any:
    """First item of ``seq`` from per-frame groups (if ``frame``), else shared groups, else None."""
    groups = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        pf = ds.PerFrameFunctionalGroupsSequence
        if frame < len(pf):
            groups.append(pf[frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for g in groups:
        items = g.get(seq)
        if items:
            return items[0]
    return None


def _rescale(ds: Any, n_frames: int) -> list[tuple[float, float]] | None:
    """Per-frame (slope, intercept), or None when the stored values are already the values."""
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        pair = (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
        pairs = [pair] * n_frames
    else:
        pairs = []
        for i in range(n_frames):
            item = _functional(ds, "PixelValueTransformationSequence", i)
            if item is None:
                return None
            pairs.append((float(item.get("RescaleSlope", 1) or 1), float(item.get("RescaleIntercept", 0) or 0)))
    return None if all(p == (1.0, 0.0) for p in pairs) else pairs


def _positive(values: Any) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return out if out and all(np.isfinite(v) and v > 0 for v in out) else None


def _inplane_spacing(ds: Any) -> tuple[float, float] | None:
    for source in (ds, _functional(ds, "PixelMeasuresSequence", 0)):
        if source is None:
            continue
        for kw in ("PixelSpacing", "ImagerPixelSpacing"):
            sp = _positive(source.get(kw)) if kw in source else None
            if sp is not None and len(sp) == 2:
                return sp[0], sp[1]
    return None


def _slice_normal(iop: Any) -> np.ndarray | None:
    try:
        v = np.asarray([float(x) for x in iop], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if v.shape != (6,):
        return None
    n = np.cross(v[:3], v[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else None


def _slice_gap(ds: Any) -> float | None:
    for source in (ds, _functional(ds, "PixelMeasuresSequence", 0)):
        if source is None:
            continue
        for kw in ("SpacingBetweenSlices", "SliceThickness"):
            sp = _positive([source.get(kw)]) if source.get(kw) is not None else None
            if sp:
                return sp[0]
    return None


def _z_from_positions(positions: np.ndarray) -> tuple[float | None, bool]:
    """Median gap of sorted positions along the normal, and whether the gaps are uniform (1%)."""
    if len(positions) < 2:
        return None, True
    gaps = np.abs(np.diff(positions))
    z = float(np.median(gaps))
    if z <= 0:
        return None, False
    return z, bool(np.all(np.abs(gaps - z) <= 0.01 * z + 1e-4))


def _decode(path: Path, ds: Any) -> tuple[np.ndarray, str, bool]:
    """Decode pixels, apply palette and rescale. Returns (array, original dtype, rescaled)."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except (ValueError, EOFError) as exc:
        msg = _reason(exc)
        if "less than expected" in msg or "truncat" in msg.lower():
            raise MedattnIOError(path, f"DICOM pixel data is truncated ({msg})") from None
        raise MedattnIOError(path, f"DICOM pixel data cannot be decoded ({msg})") from None
    except Exception as exc:  # missing decoder plugins, bad compressed streams
        raise MedattnIOError(path, f"DICOM pixel data cannot be decoded ({_reason(exc)})") from None
    original = arr.dtype.name
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        return apply_color_lut(arr, ds), original, False
    n = _frames(ds)
    pairs = _rescale(ds, n)
    if pairs is not None:
        out = arr.astype(np.float32)
        frames = out if n > 1 else out[None]
        for i, (slope, intercept) in enumerate(pairs):
            frames[i] *= np.float32(slope)
            frames[i] += np.float32(intercept)
        return out, original, True
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32), original, True
    return arr, original, False


def _strip_pixels(ds: Any) -> Any:
    for kw in _PIXEL_KEYWORDS:
        if kw in ds:
            delattr(ds, kw)
    return ds


def _layout(arr: np.ndarray, multi: bool) -> str:
    colour = arr.ndim == (4 if multi else 3)
    return ("ZHW" if multi else "HW") + ("C" if colour else "")


def read_dicom_file(path: Path, max_pixels: int | None, *, force: bool = False) -> ImageData:
    """Read one DICOM file (single or multi-frame); see the module docstring."""
    ds = _read_dataset(path, force=force)
    if not _has_pixels(ds):
        raise _no_pixel_data(path, ds)
    rows, cols, n = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), _frames(ds)
    if rows <= 0 or cols <= 0:
        raise MedattnIOError(path, f"DICOM header gives an invalid image size {rows}x{cols}")
    check_pixels(path, (rows, cols), max_pixels, planes=n)
    arr, original, rescaled = _decode(path, ds)
    multi = "NumberOfFrames" in ds and n > 1
    spacing: tuple[float, ...] | None = _inplane_spacing(ds)
    extra: dict[str, Any] = {
        "photometric": str(ds.get("PhotometricInterpretation", "")).strip(),
        "rescaled": rescaled,
        "transfer_syntax": str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")),
    }
    if multi:
        positions = []
        for i in range(n):
            item = _functional(ds, "PlanePositionSequence", i)
            positions.append(item.get("ImagePositionPatient") if item is not None else None)
        orient = _functional(ds, "PlaneOrientationSequence", 0)
        normal = _slice_normal(orient.get("ImageOrientationPatient") if orient is not None else None)
        dz = None
        if normal is not None and all(p is not None for p in positions):
            proj = np.asarray([[float(v) for v in p] for p in positions]) @ normal
            dz, extra["uniform_spacing"] = _z_from_positions(proj)
        dz = dz or _slice_gap(ds)
        spacing = (dz, *spacing) if spacing is not None and dz is not None else None
    modality = str(ds.get("Modality", "")).strip() or None
    meta = ImageMeta(spacing=spacing, modality=modality, original_dtype=original, source=str(path),
                     format="dicom", layout=_layout(arr, multi), dicom=_strip_pixels(ds), extra=extra)
    return finalize(path, arr, meta)


@register_reader
class DICOMReader(ImageReader):
    """DICOM Part 10 files (``DICM`` magic)."""

    name = "dicom"
    extensions = _DICOM_EXTENSIONS

    def sniff(self, head: bytes) -> bool:
        return is_dicom_head(head)

    def read(self, path: Path, max_pixels: int | None) -> ImageData:
        return read_dicom_file(path, max_pixels)


@register_reader
class RawDICOMReader(ImageReader):
    """DICOM datasets written without the Part 10 preamble (old scanners, ACR-NEMA style)."""

    name = "dicom-raw"
    extensions = _DICOM_EXTENSIONS
    weak_sniff = True

    def sniff(self, head: bytes) -> bool:
        return is_raw_dicom_head(head)

    def read(self, path: Path, max_pixels: int | None) -> ImageData:
        return read_dicom_file(path, max_pixels, force=True)


def _is_part10(path: Path) -> bool:
    with open(path, "rb") as fh:
        return is_dicom_head(fh.read(132))


def _dicom_files(folder: Path) -> tuple[list[Path], int]:
    """DICOM files directly inside ``folder`` (by content), and how many files were looked at."""
    files = []
    seen = 0
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError:
        raise MedattnIOError(folder, "permission denied") from None
    for entry in entries:
        if entry.name.startswith(".") or entry.name.upper() == "DICOMDIR" or not entry.is_file():
            continue
        seen += 1
        try:
            with open(entry.path, "rb") as fh:
                head = fh.read(132)
        except OSError:
            continue
        if is_dicom_head(head) or (is_raw_dicom_head(head) and (
                "." not in entry.name or entry.name.lower().endswith(_DICOM_EXTENSIONS))):
            files.append(Path(entry.path))
    return files, seen


def read_dicom_series(
    folder: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    series_uid: str | None = None,
    progress: bool = False,
) -> ImageData:
    """Read the DICOM series in ``folder`` as a ``(Z, H, W)`` volume in HU, spacing ``(dz, dy, dx)``.

    Files that are not DICOM (README, thumbnails) are ignored. A folder holding
    several series needs ``series_uid``. A folder with a single multi-frame file
    returns that file's frames. ``progress`` shows a progress bar on stderr while decoding.
    """
    folder = Path(folder)
    if not folder.exists():
        raise MedattnIOError(folder, "no such file or directory")
    if not folder.is_dir():
        raise MedattnIOError(folder, "not a directory")
    limit = resolve_max_pixels(max_pixels)
    files, seen = _dicom_files(folder)
    if not files:
        problem = "directory is empty" if seen == 0 else f"directory holds no readable image: none of its {seen} files is DICOM"
        raise MedattnIOError(folder, problem)
    headers = []
    for f in files:
        hdr = _read_dataset(f, force=not _is_part10(f), stop_before_pixels=True)
        headers.append((f, hdr))
    by_series: dict[str, list[tuple[Path, Any]]] = {}
    for f, hdr in headers:
        by_series.setdefault(str(hdr.get("SeriesInstanceUID", "")), []).append((f, hdr))
    if series_uid is not None:
        if series_uid not in by_series:
            raise MedattnIOError(folder, f"no DICOM series with SeriesInstanceUID {series_uid}")
        chosen = by_series[series_uid]
    elif len(by_series) > 1:
        listing = "; ".join(f"{uid or '<none>'} ({len(v)} files)" for uid, v in by_series.items())
        raise MedattnIOError(folder, f"directory holds {len(by_series)} DICOM series: {listing}; pass series_uid")
    else:
        chosen = next(iter(by_series.values()))
    if len(chosen) == 1:
        return read_dicom_file(chosen[0][0], limit, force=not _is_part10(chosen[0][0]))
    return _read_series(folder, chosen, limit, progress)


def _read_series(folder: Path, chosen: list[tuple[Path, Any]], limit: int | None, progress: bool = False
                 ) -> ImageData:
    first = chosen[0][1]
    for f, hdr in chosen:
        if _frames(hdr) > 1:
            raise MedattnIOError(f, "unsupported dimensionality: multi-frame file inside a multi-file series")
        if (hdr.get("Rows"), hdr.get("Columns")) != (first.get("Rows"), first.get("Columns")):
            raise MedattnIOError(
                f, f"slice size {hdr.get('Rows')}x{hdr.get('Columns')} differs from the series' "
                   f"{first.get('Rows')}x{first.get('Columns')}"
            )
    normal = _slice_normal(first.get("ImageOrientationPatient"))
    positions = [h.get("ImagePositionPatient") for _, h in chosen]
    extra: dict[str, Any] = {}
    dz = None
    if normal is not None and all(p is not None and len(p) == 3 for p in positions):
        proj = np.asarray([[float(v) for v in p] for p in positions]) @ normal
        order = np.argsort(proj, kind="stable")
        sorted_proj = proj[order]
        dup = np.flatnonzero(np.diff(sorted_proj) < 1e-4)
        if dup.size:
            a, b = chosen[order[dup[0]]][0].name, chosen[order[dup[0] + 1]][0].name
            raise MedattnIOError(
                folder, f"{dup.size + 1} slices share a position (e.g. {a} and {b}); more than one volume?"
            )
        dz, extra["uniform_spacing"] = _z_from_positions(sorted_proj)
        extra["sorted_by"] = "ImagePositionPatient"
    else:
        numbers = [h.get("InstanceNumber") for _, h in chosen]
        keys = [int(n) if n is not None else i for i, n in enumerate(numbers)]
        order = np.argsort(keys, kind="stable")
        extra["sorted_by"] = "InstanceNumber"
    dz = dz or _slice_gap(first)
    rows, cols = int(first.Rows), int(first.Columns)
    check_pixels(folder, (rows, cols), limit, planes=len(chosen))
    volume: np.ndarray | None = None
    files, dicom_headers = [], []
    original = ""
    any_rescaled = False
    slices = []
    for idx in _track(order, f"reading {folder.name}", progress):
        f = chosen[idx][0]
        ds = _read_dataset(f, force=not _is_part10(f))
        if not _has_pixels(ds):
            raise _no_pixel_data(f, ds)
        arr, original, rescaled = _decode(f, ds)
        any_rescaled |= rescaled
        slices.append(arr)
        files.append(str(f))
        dicom_headers.append(_strip_pixels(ds))
    dtype = np.result_type(*[s.dtype for s in slices])
    volume = np.empty((len(slices), *slices[0].shape), dtype=dtype)
    for i, s in enumerate(slices):
        volume[i] = s
    inplane = _inplane_spacing(first)
    spacing = (dz, *inplane) if inplane is not None and dz is not None else None
    extra.update(
        photometric=str(first.get("PhotometricInterpretation", "")).strip(),
        rescaled=any_rescaled,
        files=files,
        dicom_headers=dicom_headers,
        orientation=[float(v) for v in first.get("ImageOrientationPatient", [])] or None,
        positions=[[float(v) for v in h.get("ImagePositionPatient", [])] for h in dicom_headers],
    )
    modality = str(first.get("Modality", "")).strip() or None
    meta = ImageMeta(spacing=spacing, modality=modality, original_dtype=original, source=str(folder),
                     format="dicom-series", layout="ZHWC" if volume.ndim == 4 else "ZHW",
                     dicom=dicom_headers[0], extra=extra)
    return finalize(folder, volume, meta)


def _track(items: Any, label: str, enabled: bool) -> Any:
    """Iterate ``items`` with a transient rich progress bar on stderr when ``enabled``."""
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, description=label, console=Console(stderr=True), transient=True)


def _encode(path: Path, arr: np.ndarray, slope: float | None, intercept: float | None
            ) -> tuple[np.ndarray, float | None, float | None]:
    """Stored integer pixels (and the rescale that maps them back) for a gray array."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    if slope is None and arr.dtype.kind in "ui":
        if arr.dtype in (np.uint8, np.uint16, np.int16):
            return arr, None, None
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 65535:
            return arr.astype(np.uint16), None, None
        if lo >= -32768 and hi <= 32767:
            return arr.astype(np.int16), None, None
    values = arr.astype(np.float64)
    s, b = (slope or 1.0), (intercept or 0.0)
    stored = (values - b) / s
    rounded = np.rint(stored)
    exact = np.allclose(stored, rounded, atol=1e-3)
    if exact and rounded.min() >= -32768 and rounded.max() <= 32767:
        return rounded.astype(np.int16), s, b
    if exact and rounded.min() >= 0 and rounded.max() <= 65535:
        return rounded.astype(np.uint16), s, b
    # values that the integer grid cannot hold: a fresh linear rescale over 16 bits
    lo, hi = float(values.min()), float(values.max())
    s = (hi - lo) / 65535.0 if hi > lo else 1.0
    return np.rint((values - lo) / s).astype(np.uint16), s, lo


@register_writer
class DICOMWriter(ImageWriter):
    """One derived DICOM slice: ``meta.dicom``'s header with new pixels, or a Secondary Capture.

    Gray arrays are stored as 16-bit integers with ``RescaleSlope``/``Intercept``
    chosen so that reading the file back gives the written values (HU stay HU);
    uint8 RGB is stored as RGB. Volumes are written slice by slice by the caller.
    """

    name = "dicom"
    extensions = (".dcm", ".dicom")

    def write(self, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
        import pydicom
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

        arr = np.asarray(array)
        colour = arr.ndim == 3 and arr.shape[-1] == 3
        if not (arr.ndim == 2 or colour):
            raise MedattnIOError(
                path, f"the DICOM writer stores one 2-D slice (gray or RGB); got shape {tuple(arr.shape)}"
            )
        check_finite_write(path, arr)
        src = meta.dicom if meta is not None else None
        if src is not None:
            ds = copy.deepcopy(src)
            _strip_pixels(ds)
            for kw in ("NumberOfFrames", "PerFrameFunctionalGroupsSequence", "SmallestImagePixelValue",
                       "LargestImagePixelValue", "ModalityLUTSequence", "PlanarConfiguration"):
                if kw in ds:
                    delattr(ds, kw)
            image_type = list(ds.get("ImageType", ["DERIVED", "SECONDARY"]))
            ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
        else:
            ds = pydicom.Dataset()
            ds.SOPClassUID = SecondaryCaptureImageStorage
            ds.StudyInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
            ds.Modality = (meta.modality if meta is not None and meta.modality else "OT")
            ds.ConversionType = "WSD"
            ds.PatientName = ""
            ds.PatientID = ""
            ds.ImageType = ["DERIVED", "SECONDARY"]
            if meta is not None and meta.spacing is not None:
                ds.PixelSpacing = [f"{meta.spacing[-2]:.6g}", f"{meta.spacing[-1]:.6g}"]
        ds.SOPInstanceUID = generate_uid()
        ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
        for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if kw in ds and src is None:
                delattr(ds, kw)
        if colour:
            if arr.dtype != np.uint8:
                raise MedattnIOError(path, f"the DICOM writer stores RGB as uint8; got {arr.dtype}")
            stored = np.ascontiguousarray(arr)
            ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
            for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
                if kw in ds:
                    delattr(ds, kw)
        else:
            slope = intercept = None
            if src is not None and ("RescaleSlope" in src or "RescaleIntercept" in src or arr.dtype.kind == "f"):
                slope = float(src.get("RescaleSlope", 1) or 1)
                intercept = float(src.get("RescaleIntercept", 0) or 0)
            stored, slope, intercept = _encode(path, arr, slope, intercept)
            ds.SamplesPerPixel = 1
            photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
            ds.PhotometricInterpretation = "MONOCHROME1" if photometric == "MONOCHROME1" else "MONOCHROME2"
            if slope is not None:
                ds.RescaleSlope = f"{slope:.10g}"[:16]
                ds.RescaleIntercept = f"{intercept:.10g}"[:16]
            else:
                for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
                    if kw in ds:
                        delattr(ds, kw)
        bits = stored.dtype.itemsize * 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
        ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
        ds.PixelData = stored.astype(stored.dtype.newbyteorder("<"), copy=False).tobytes()
        ds["PixelData"].VR = "OW" if bits > 8 else "OB"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)


def check_finite_write(path: Path, arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise MedattnIOError(path, "cannot write NaN or Inf values to DICOM")
