"""Upload checks: by content, size and pixel limits, and DICOM de-identification."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medattn.app.deid import deidentify, remap_uid
from medattn.app.uploads import UploadError, check_upload, sniff

KEY = b"test-key"


def _png(h=16, w=16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_sniff_by_content_not_name():
    assert sniff(_png()) == "png"
    up = check_upload("photo.jpg", _png(), 10**6, 10**6, KEY)  # wrong extension: content decides
    assert up.kind == "png" and up.files[0][0] == "photo.png"


@pytest.mark.parametrize(
    ("data", "problem"),
    [(b"", "empty"), (b"hello world, not an image" * 20, "not a supported image"),
     (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, None)],
)
def test_bad_content_is_refused(data, problem):
    with pytest.raises(UploadError) as exc:
        check_upload("x.png", data, 10**6, 10**6, KEY)
    assert str(exc.value).startswith("x.png: ")
    if problem:
        assert problem in str(exc.value)


def test_size_and_pixel_limits():
    with pytest.raises(UploadError, match="limit"):
        check_upload("big.png", _png(), 50, 10**6, KEY)
    with pytest.raises(UploadError, match=r"big\.png"):
        check_upload("big.png", _png(200, 200), 10**6, 1000, KEY)


def test_dicom_is_deidentified():
    path = get_testdata_file("CT_small.dcm")
    raw = Path(path).read_bytes()
    original = pydicom.dcmread(path)
    up = check_upload("scan.dcm", raw, 10**7, 10**7, KEY)
    ds = pydicom.dcmread(io.BytesIO(up.files[0][1]))
    assert str(ds.PatientName) == "" and ds.PatientID == ""
    assert ds.get("StudyDate", "") == "" and "InstitutionName" not in ds
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.SOPInstanceUID == remap_uid(original.SOPInstanceUID, KEY)  # consistent remapping
    assert ds.SOPClassUID == original.SOPClassUID
    assert ds.PatientIdentityRemoved == "YES"
    np.testing.assert_array_equal(ds.pixel_array, original.pixel_array)
    assert original.PatientName.family_name.encode() not in up.files[0][1]


def test_deid_handles_sequences_and_private_tags():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.add_new(0x00091001, "LO", "private secret")
    item = pydicom.Dataset()
    item.PatientName = "Nested^Name"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = pydicom.Sequence([item])
    deidentify(ds, KEY)
    assert 0x00091001 not in ds
    assert str(ds.ReferencedImageSequence[0].PatientName) == ""
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == remap_uid("1.2.3.4", KEY)


def test_dicom_without_pixels_is_refused():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(UploadError, match="no pixel data"):
        check_upload("nopix.dcm", buf.getvalue(), 10**7, 10**7, KEY)


def test_zip_series_and_zip_bomb(tmp_path):
    import zipfile

    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.dcm", raw)
        zf.writestr("a/2.dcm", raw)
    up = check_upload("series.zip", buf.getvalue(), 10**7, 10**7, KEY)
    assert up.kind == "dicom-series" and len(up.files) == 2
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", b"\x00" * 5_000_000)
    with pytest.raises(UploadError, match="expands"):
        check_upload("bomb.zip", bomb.getvalue(), 1_000_000, 10**7, KEY)
    notdcm = io.BytesIO()
    with zipfile.ZipFile(notdcm, "w") as zf:
        zf.writestr("readme.txt", b"hello")
    with pytest.raises(UploadError, match="not a DICOM"):
        check_upload("x.zip", notdcm.getvalue(), 10**7, 10**7, KEY)
