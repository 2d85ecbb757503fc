"""DICOM de-identification following the Basic Application Level Confidentiality
Profile of DICOM PS3.15 (Annex E, table E.1-1), applied before anything is stored.

What is done, in order:

* missing or empty identity UIDs (SOP Instance, SOP Class, Study, Series and
  the file meta copies) are generated, so that every stored file can be
  written and exported (real exports leave them empty: HTTP 500 before);
* every attribute of table E.1-1 (:data:`medattn.app.deid_profile.BASIC_PROFILE`,
  about 600 rows) gets its action, at every nesting level: ``X`` remove,
  ``Z`` empty, ``D`` dummy value of the VR, ``U`` consistent new UID; the
  combined actions resolve as :func:`resolve_action` says;
* beyond the table, by value representation: every person name (PN) is
  emptied, every instance UID (UI) is remapped (well-known DICOM UIDs such as
  SOP classes and transfer syntaxes are kept), dates/times (DA, DT, TM) are
  emptied, so identifying attributes the table does not name are covered too;
* private attributes, curves and overlays are removed; sequences are
  processed recursively;
* ``PatientIdentityRemoved = YES``, ``DeidentificationMethod`` and its code
  sequence (DCM 113100, Basic Application Confidentiality Profile) are set.

UIDs are remapped with a keyed hash (HMAC-SHA256 of the original UID under the
application's secret key) to a ``2.25.<integer>`` UID: the same original UID
always gets the same replacement, so the slices of one series stay one series
and references between files stay valid, and the original cannot be recovered
without the key. A missing UID is derived the same way from attributes the
files of one series (or study) share, hashed before they are removed.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from medattn.app.deid_profile import BASIC_PROFILE, REPEATING_GROUPS

#: What medattn does for each action code of table E.1-1. The combined codes
#: allow removing unless the IOD needs the attribute; medattn stores inputs
#: for its own processing, so it removes (X) where allowed, empties Z/D, and
#: keeps the image references of X/Z/U* (their UIDs remapped) so derived
#: objects can still point at their sources.
RESOLVED = {"D": "D", "Z": "Z", "X": "X", "U": "U", "K": "K", "Z/D": "Z", "X/Z": "X", "X/D": "X",
            "X/Z/D": "X", "X/Z/U*": "U*"}

METHOD = "PS3.15 E.1-1 Basic Profile (medattn)"  # LO: at most 64 characters
_DICOM_ROOT = "1.2.840.10008."  # UIDs of the standard itself (SOP classes, transfer syntaxes, codes)
# Class and implementation UIDs say what kind of object a file is and what wrote it, not whom it shows.
_KEEP_UIDS = {0x00080016, 0x00020002, 0x00020010, 0x00020012, 0x00081150, 0x00080062, 0x00041510, 0x00041512}
# File meta attributes naming the sending station (AE titles) or private content.
_META_REMOVE = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000D", "IS": "0", "DS": "0",
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0, "AT": 0,
}
_STUDY_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "StudyDate", "StudyTime", "AccessionNumber",
               "StudyID", "StudyDescription")
_SERIES_KEYS = ("SeriesNumber", "SeriesDate", "SeriesTime", "SeriesDescription", "Modality",
                "FrameOfReferenceUID", "ProtocolName", "Rows", "Columns")
_CLASS_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}


def remap_uid(uid: str, key: bytes) -> str:
    """A consistent replacement UID: ``2.25.`` + 38 decimal digits of HMAC-SHA256(key, uid)."""
    digest = hmac.new(key, uid.encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def resolve_action(code: str) -> str:
    """The one action medattn takes for a table E.1-1 action code (``"X/Z/D"`` -> ``"X"``)."""
    try:
        return RESOLVED[code]
    except KeyError:
        raise ValueError(f"unknown de-identification action {code!r}") from None


def deidentify(ds: Dataset, key: bytes | str) -> Dataset:
    """De-identify ``ds`` in place (and its file meta) and return it."""
    key_b = key.encode() if isinstance(key, str) else key
    _fill_missing_uids(ds, key_b)
    _walk(ds, key_b)
    _fix_file_meta(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    return ds


def _text(ds: Dataset, keywords: tuple[str, ...]) -> str:
    return "|".join(f"{k}={ds.get(k, '')}" for k in keywords)


def _fill_missing_uids(ds: Dataset, key: bytes) -> None:
    """Give the dataset the identity UIDs a stored DICOM file needs (original values, remapped later).

    A missing study or series UID comes from the attributes the files of one study or series share,
    a missing SOP instance UID from the file meta copy, else from the series and the pixel data; a
    missing SOP class from the file meta, else from the modality. The placeholders start with
    ``missing:`` and are hashed with the key at once, so no identifying value is kept.
    """
    meta = getattr(ds, "file_meta", None)
    study = _text(ds, _STUDY_KEYS)
    series = study + "|" + _text(ds, _SERIES_KEYS)
    if not ds.get("StudyInstanceUID"):
        ds.StudyInstanceUID = remap_uid("missing:study:" + study, key)
    if not ds.get("SeriesInstanceUID"):
        ds.SeriesInstanceUID = remap_uid("missing:series:" + series, key)
    if not ds.get("SOPInstanceUID"):
        from_meta = str(meta.get("MediaStorageSOPInstanceUID", "")) if meta is not None else ""
        if from_meta:
            ds.SOPInstanceUID = from_meta
        else:
            pixels = hashlib.sha256(bytes(ds.get("PixelData", b"") or b"")).hexdigest()
            where = f"{ds.get('InstanceNumber', '')}|{list(ds.get('ImagePositionPatient', []) or [])}"
            ds.SOPInstanceUID = remap_uid(f"missing:instance:{series}|{where}|{pixels}", key)
    if not ds.get("SOPClassUID"):
        from_meta = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
        modality = str(ds.get("Modality", "")).upper()
        ds.SOPClassUID = from_meta or _CLASS_BY_MODALITY.get(modality, SecondaryCaptureImageStorage)


def _fix_file_meta(ds: Dataset) -> None:
    """File meta that matches the de-identified dataset, so ``save_as(enforce_file_format=True)`` works."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    for tag in _META_REMOVE:
        if tag in meta:
            del meta[tag]
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if not meta.get("TransferSyntaxUID"):
        implicit = getattr(ds, "is_implicit_VR", None) or getattr(ds, "original_encoding", (False,))[0]
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _remove_whole(tag: int) -> bool:
    """Private attributes and the curve/overlay repeating groups go entirely."""
    group = tag >> 16
    return bool(group % 2) or REPEATING_GROUPS.get(group & 0xFF00) == "X"


def _walk(ds: Dataset, key: bytes) -> None:
    for elem in list(ds):
        tag = int(elem.tag)
        if _remove_whole(tag):
            del ds[elem.tag]
            continue
        code = BASIC_PROFILE.get(tag)
        action = resolve_action(code) if code else None
        if action == "X":
            del ds[elem.tag]
        elif action == "K":
            continue
        elif elem.VR == "SQ":
            if action in ("Z", "D"):  # a dummy sequence item would carry nothing: leave it empty
                elem.value = Sequence()
            else:
                for item in elem.value:
                    _walk(item, key)
        elif action == "D" and elem.VR != "UI":
            elem.value = _dummy(elem.VR)
        elif action == "Z" or (action is None and elem.VR in ("PN", "DA", "DT", "TM")):
            elem.value = b"" if elem.VR in ("OB", "OW", "UN") else ""
        elif elem.VR == "UI" or action in ("U", "D"):
            _remap_element(elem, tag, key)


def _dummy(vr: str) -> Any:
    """A non-empty value valid for ``vr`` that carries no information."""
    if vr in _DUMMY_BY_VR:
        return _DUMMY_BY_VR[vr]
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    return _DUMMY_TEXT


def _remap_element(elem: Any, tag: int, key: bytes) -> None:
    if tag in _KEEP_UIDS or not elem.value:
        return
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    new = [str(v) if str(v).startswith(_DICOM_ROOT) else remap_uid(str(v), key) for v in values]
    elem.value = new if elem.VM > 1 else new[0]
