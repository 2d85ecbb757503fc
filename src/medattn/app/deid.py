"""DICOM de-identification following the Basic Application Level Confidentiality
Profile of DICOM PS3.15 (Annex E, table E.1-1), applied before anything is stored.

What is done, in order:

* every attribute listed in :data:`BASIC_PROFILE` gets its action:
  ``X`` remove, ``Z`` replace with an empty (zero-length) value, ``D`` replace
  with a dummy value, ``U`` replace UID by a consistent new one;
* beyond the list, by value representation: every person name (PN) is
  emptied, every UID (UI) except the SOP/transfer syntax *class* UIDs is
  remapped, dates/times (DA, DT, TM) are emptied (date offsets keep no
  information the application needs), so identifying attributes the table
  does not name are still covered;
* private tags, curves and overlay data are removed; sequences are processed
  recursively;
* ``PatientIdentityRemoved = YES`` and ``DeidentificationMethod`` are set.

UIDs are remapped with a keyed hash (HMAC-SHA256 of the original UID under the
application's secret key) to a ``2.25.<integer>`` UID, so the slices of one
series stay one series after de-identification, and the original UID cannot
be recovered without the key.
"""

from __future__ import annotations

import hashlib
import hmac

from pydicom.dataset import Dataset

# (group, element) -> action, from PS3.15 table E.1-1 (the attributes an image
# upload plausibly carries; the VR rules in deidentify() cover the rest).
BASIC_PROFILE: dict[int, str] = {
    0x00080014: "U",  # Instance Creator UID
    0x00080018: "U",  # SOP Instance UID
    0x00080020: "Z",  # Study Date
    0x00080021: "X",  # Series Date
    0x00080022: "X",  # Acquisition Date
    0x00080023: "Z",  # Content Date
    0x0008002A: "X",  # Acquisition DateTime
    0x00080030: "Z",  # Study Time
    0x00080031: "X",  # Series Time
    0x00080032: "X",  # Acquisition Time
    0x00080033: "Z",  # Content Time
    0x00080050: "Z",  # Accession Number
    0x00080080: "X",  # Institution Name
    0x00080081: "X",  # Institution Address
    0x00080090: "Z",  # Referring Physician's Name
    0x00080092: "X",  # Referring Physician's Address
    0x00080094: "X",  # Referring Physician's Telephone Numbers
    0x00081010: "X",  # Station Name
    0x00081030: "X",  # Study Description
    0x0008103E: "X",  # Series Description
    0x00081040: "X",  # Institutional Department Name
    0x00081048: "X",  # Physician(s) of Record
    0x00081050: "X",  # Performing Physician's Name
    0x00081060: "X",  # Name of Physician(s) Reading Study
    0x00081070: "X",  # Operators' Name
    0x00081080: "X",  # Admitting Diagnoses Description
    0x00081155: "U",  # Referenced SOP Instance UID
    0x00082111: "X",  # Derivation Description
    0x00100010: "Z",  # Patient's Name
    0x00100020: "Z",  # Patient ID
    0x00100021: "X",  # Issuer of Patient ID
    0x00100030: "Z",  # Patient's Birth Date
    0x00100032: "X",  # Patient's Birth Time
    0x00100040: "Z",  # Patient's Sex
    0x00101000: "X",  # Other Patient IDs
    0x00101001: "X",  # Other Patient Names
    0x00101002: "X",  # Other Patient IDs Sequence
    0x00101005: "X",  # Patient's Birth Name
    0x00101010: "X",  # Patient's Age
    0x00101020: "X",  # Patient's Size
    0x00101030: "X",  # Patient's Weight
    0x00101040: "X",  # Patient's Address
    0x00101060: "X",  # Patient's Mother's Birth Name
    0x00101090: "X",  # Medical Record Locator
    0x00102154: "X",  # Patient's Telephone Numbers
    0x00102160: "X",  # Ethnic Group
    0x00102180: "X",  # Occupation
    0x001021B0: "X",  # Additional Patient History
    0x00104000: "X",  # Patient Comments
    0x00180010: "Z",  # Contrast/Bolus Agent
    0x00181000: "X",  # Device Serial Number
    0x00181030: "X",  # Protocol Name
    0x0020000D: "U",  # Study Instance UID
    0x0020000E: "U",  # Series Instance UID
    0x00200010: "Z",  # Study ID
    0x00200052: "U",  # Frame of Reference UID
    0x00200200: "U",  # Synchronization Frame of Reference UID
    0x00204000: "X",  # Image Comments
    0x00321032: "X",  # Requesting Physician
    0x00321060: "X",  # Requested Procedure Description
    0x00400244: "X",  # Performed Procedure Step Start Date
    0x00400245: "X",  # Performed Procedure Step Start Time
    0x00400253: "X",  # Performed Procedure Step ID
    0x00400254: "X",  # Performed Procedure Step Description
    0x00401001: "X",  # Requested Procedure ID
    0x0040A124: "U",  # UID
    0x00880140: "U",  # Storage Media File-set UID
    0x30060024: "U",  # Referenced Frame of Reference UID
    0x300600C2: "U",  # Related Frame of Reference UID
}

# Class UIDs say what kind of object a file is, not who it is about: keep them.
_KEEP_UIDS = {0x00080016, 0x00021002, 0x00020010, 0x00020012, 0x00081150, 0x00020002, 0x00080062}
_REMOVE_GROUPS = {0x5000, 0x6000}  # curves and overlays (repeating groups 50xx, 60xx)


def remap_uid(uid: str, key: bytes) -> str:
    """A consistent replacement UID: ``2.25.`` + 38 decimal digits of HMAC-SHA256(key, uid)."""
    digest = hmac.new(key, uid.encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def deidentify(ds: Dataset, key: bytes | str) -> Dataset:
    """De-identify ``ds`` in place (and its file meta) and return it."""
    key_b = key.encode() if isinstance(key, str) else key
    ds.remove_private_tags()
    _walk(ds, key_b)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID if "SOPInstanceUID" in ds else remap_uid(
            str(meta.MediaStorageSOPInstanceUID), key_b)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 Basic Profile (medattn)"
    return ds


def _walk(ds: Dataset, key: bytes) -> None:
    for elem in list(ds):
        tag = int(elem.tag)
        group = tag >> 16
        if (group & 0xFF00) in _REMOVE_GROUPS:
            del ds[elem.tag]
            continue
        action = BASIC_PROFILE.get(tag)
        if elem.VR == "SQ":
            if action == "X":
                del ds[elem.tag]
                continue
            for item in elem.value:
                _walk(item, key)
            continue
        if action == "X":
            del ds[elem.tag]
        elif action == "Z" or (action is None and elem.VR in ("PN", "DA", "DT", "TM")):
            elem.value = ""
        elif action == "D":
            elem.value = "ANONYMIZED"
        elif (action == "U" or elem.VR == "UI") and tag not in _KEEP_UIDS and elem.value:
            if elem.VM > 1:
                elem.value = [remap_uid(str(v), key) for v in elem.value]
            else:
                elem.value = remap_uid(str(elem.value), key)
