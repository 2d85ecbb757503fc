"""Checking uploads before anything is stored: size, type by content, pixel
limit, and DICOM de-identification.

Accepted: PNG, JPEG, TIFF, BMP, DICOM (one file, or a ZIP of one series),
NIfTI (``.nii`` / ``.nii.gz``). The file name's extension is never trusted:
the type comes from the first bytes. Everything wrong with an upload becomes
an :class:`UploadError` whose message names the file and the problem.
"""

from __future__ import annotations

import gzip
import io
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from medattn.errors import MedattnError, MedattnIOError

MAX_ZIP_MEMBERS = 2000
#: longest stored file stem: a client's file name is never used on disk as it is (255-byte limits)
MAX_STEM = 100


class UploadError(MedattnError):
    """An upload was refused; the message is safe to show to the user."""


@dataclass
class CheckedUpload:
    """A validated upload, de-identified when it was DICOM.

    ``files`` are the de-identified files to store as the case input (one,
    or the slices of a series); ``modality`` is ``(modality, best guess)``
    (:func:`medattn.app.modality.detect`) of the image the check decoded, when
    it decoded one whole (pictures and NIfTI), so it is not decoded again.
    """

    name: str
    kind: str  # png | jpeg | tiff | bmp | dicom | dicom-series | nifti
    files: list[tuple[str, bytes]] = field(default_factory=list)
    modality: tuple[str, str] | None = None


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes (at least 352), or ``None``."""
    # DICM first: a DICOM preamble may itself hold a TIFF header (dual-personality files).
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"BM") and len(head) > 26:
        return "bmp"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = gzip.GzipFile(fileobj=io.BytesIO(head)).read(352)
        except (OSError, EOFError):
            inner = b""
        return "nifti" if _is_nifti(inner) else None
    if _is_nifti(head):
        return "nifti"
    return None


def _is_nifti(head: bytes) -> bool:
    return len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00")


def check_upload(name: str, data: bytes, max_bytes: int, max_pixels: int, deid_key: bytes) -> CheckedUpload:
    """Validate one uploaded file and return what may be stored.

    Every failure, expected or not, becomes an :class:`UploadError` that names the file.
    """
    try:
        return _check(name, data, max_bytes, max_pixels, deid_key)
    except UploadError:
        raise
    except Exception as exc:  # a decoder or de-identification bug must not become an HTTP 500
        raise UploadError(f"{name}: cannot be processed ({type(exc).__name__}: {_short(exc)})") from exc


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check(name: str, data: bytes, max_bytes: int, max_pixels: int, deid_key: bytes) -> CheckedUpload:
    if not data:
        raise UploadError(f"{name}: file is empty")
    if len(data) > max_bytes:
        raise UploadError(f"{name}: file is {len(data) / 1e6:.1f} MB, more than the {max_bytes / 1e6:.0f} MB limit")
    kind = sniff(data[:4096])
    if kind is None:
        raise UploadError(f"{name}: not a supported image (PNG, JPEG, TIFF, BMP, DICOM, NIfTI or a ZIP of DICOM)")
    if kind == "zip":
        return _check_dicom_zip(name, data, max_bytes, max_pixels, deid_key)
    if kind == "dicom":
        return CheckedUpload(name, "dicom", [(_stem(name) + ".dcm", _deid_dicom(name, data, max_pixels, deid_key))])
    ext = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "bmp": ".bmp", "nifti": ".nii.gz"}[kind]
    if kind == "nifti" and not data.startswith(b"\x1f\x8b"):
        ext = ".nii"
    stored = _stem(name) + ext
    return CheckedUpload(name, kind, [(stored, data)], modality=_probe(name, stored, data, max_pixels))


def _stem(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    for suf in (".nii.gz", ".dcm", ".zip"):
        if base.lower().endswith(suf):
            return base[: -len(suf)][:MAX_STEM] or "input"
    return Path(base).stem[:MAX_STEM] or "input"


def _probe(name: str, stored: str, data: bytes, max_pixels: int) -> tuple[str, str]:
    """Decode the file once with medattn.io (pixel limit, NaN, truncation...); returns the decoded image's
    ``(modality, best guess)`` (:func:`medattn.app.modality.detect`), found while the file is at hand."""
    from medattn.app.modality import detect
    from medattn.io import read_image
    from medattn.io.shape import check_shape

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / ("probe" + "".join(Path(stored).suffixes[-2:]))  # never the client's name on disk
        p.write_bytes(data)
        try:
            if p.suffix not in (".dcm", ".nii", ".gz"):  # 2D pictures: not a 1x1 thumbnail nor a 3x20000 strip
                check_shape(p)
            return detect(read_image(p, max_pixels=max_pixels))
        except MedattnIOError as exc:
            raise UploadError(f"{name}: {exc.problem}") from None


def _deid_dicom(name: str, data: bytes, max_pixels: int, key: bytes) -> bytes:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from medattn.app.deid import deidentify

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise UploadError(f"{name}: unreadable DICOM ({exc})") from None
    if "PixelData" not in ds:
        raise UploadError(f"{name}: DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows * cols * frames > max_pixels:
        raise UploadError(f"{name}: {rows}x{cols}x{frames} pixels exceed the limit of {max_pixels}")
    try:
        deidentify(ds, key)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # e.g. empty UIDs the writer refuses
        raise UploadError(f"{name}: DICOM cannot be de-identified ({_short(exc)})") from exc
    out = buf.getvalue()
    _probe(name, "probe.dcm", out, max_pixels)
    return out


def _check_dicom_zip(name: str, data: bytes, max_bytes: int, max_pixels: int, key: bytes) -> CheckedUpload:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError(f"{name}: damaged ZIP file") from None
    members = [m for m in zf.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
    if not members:
        raise UploadError(f"{name}: ZIP file holds no files")
    if len(members) > MAX_ZIP_MEMBERS:
        raise UploadError(f"{name}: ZIP holds {len(members)} files, more than {MAX_ZIP_MEMBERS}")
    total = sum(m.file_size for m in members)
    if total > 4 * max_bytes:  # zip bomb: declared sizes, checked again while reading
        raise UploadError(f"{name}: ZIP expands to {total / 1e6:.0f} MB, more than allowed")
    files: list[tuple[str, bytes]] = []
    budget = 4 * max_bytes
    for i, m in enumerate(sorted(members, key=lambda m: m.filename)):
        with zf.open(m) as fh:
            blob = fh.read(budget + 1)
        budget -= len(blob)
        if budget < 0:
            raise UploadError(f"{name}: ZIP expands to more than allowed")
        if sniff(blob[:4096]) != "dicom":
            raise UploadError(f"{name}: {Path(m.filename).name} inside the ZIP is not a DICOM file")
        files.append((f"slice_{i:04d}.dcm", _deid_dicom(f"{name}:{Path(m.filename).name}", blob, max_pixels, key)))
    return CheckedUpload(name, "dicom-series", files)
