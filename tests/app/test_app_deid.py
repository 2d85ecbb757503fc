"""De-identification: the whole PS3.15 table E.1-1, nested sequences, missing UIDs, real CT exports."""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medattn.app.deid import RESOLVED, deidentify, remap_uid, resolve_action
from medattn.app.deid_profile import ACTIONS, BASIC_PROFILE
from medattn.app.uploads import check_upload

KEY = b"test-key"
SECRET = "Secret Value"
SAMPLE_UID = "1.2.3.4.5.6789"


def _sample(vr: str):
    """An identifying-looking value of ``vr``, recognisable after de-identification."""
    vr = vr.split(" or ")[0]
    by_vr = {"AE": "STATION7", "AS": "042Y", "CS": "SECRET", "DA": "20200102", "DS": "1.5", "DT": "20200102120000",
             "FL": 1.5, "FD": 1.5, "IS": "7", "PN": "Doe^Johnathan", "TM": "120000", "UI": SAMPLE_UID,
             "UL": 7, "US": 7, "SS": 7, "SL": 7, "UV": 7, "SV": 7, "AT": 0x00100010, "UR": "http://example.org/doe"}
    if vr in by_vr:
        return by_vr[vr]
    if vr.startswith("O") or vr == "UN":
        return b"secret"
    if vr == "SQ":
        item = Dataset()
        item.PatientName = "Doe^Johnathan"
        item.ReferencedSOPInstanceUID = SAMPLE_UID
        return Sequence([item])
    return SECRET


def _dataset_with(tag: int) -> tuple[Dataset, str]:
    vr = dictionary_VR(tag).split(" or ")[0]
    ds = Dataset()
    ds.add_new(tag, vr, _sample(vr))
    outer = Dataset()
    outer.add_new(tag, vr, _sample(vr))
    ds.ProcedureCodeSequence = Sequence([outer])  # not in the table: de-identified by recursion
    return ds, vr


def _check(ds: Dataset, tag: int, vr: str, action: str) -> None:
    if action == "X":
        assert tag not in ds
        return
    value = ds[tag].value
    if vr == "SQ":
        if action in ("Z", "D"):
            assert len(value) == 0
        else:  # U*: references kept, the UIDs and names inside de-identified
            assert value[0].ReferencedSOPInstanceUID == remap_uid(SAMPLE_UID, KEY)
            assert str(value[0].PatientName) == ""
        return
    if action == "Z":
        assert value in ("", b"", None)
    elif action == "U" or vr == "UI":
        assert value == remap_uid(SAMPLE_UID, KEY)
    else:  # D: a dummy, non-empty, not the original
        assert value not in ("", b"", None) and value != _sample(vr)


@pytest.mark.parametrize("tag", sorted(BASIC_PROFILE), ids=lambda t: f"{t >> 16:04X}_{t & 0xFFFF:04X}")
def test_every_attribute_of_table_e1_1(tag):
    ds, vr = _dataset_with(tag)
    deidentify(ds, KEY)
    action = resolve_action(BASIC_PROFILE[tag])
    _check(ds, tag, vr, action)
    _check(ds.ProcedureCodeSequence[0], tag, vr, action)


def test_the_table_is_the_whole_profile():
    assert len(BASIC_PROFILE) > 550  # table E.1-1 (2023) lists about 600 attributes
    assert set(BASIC_PROFILE.values()) <= set(ACTIONS) <= set(RESOLVED)
    named = {0x00380010: "X", 0x00102000: "X", 0x00324000: "X", 0x00100010: "Z", 0x00080018: "U",
             0x00080080: "X/Z/D", 0x00081140: "X/Z/U*", 0x00400551: "D"}
    assert {t: BASIC_PROFILE[t] for t in named} == named
    with pytest.raises(ValueError, match="unknown"):
        resolve_action("Q")


def _identifying_ct() -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.AdmissionID = "ADM-99172"
    ds.MedicalAlerts = "Penicillin allergy, Doe"
    ds.StudyComments = "Mr Doe, follow-up"
    item = Dataset()
    item.AdmissionID = "ADM-99172"
    item.MedicalAlerts = "nested alert"
    item.StudyComments = "nested comment"
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.add_new(0x00291010, "LO", "nested private")
    ds.ReferencedImageSequence = Sequence([item])
    ds.add_new(0x00091001, "LO", "private secret")
    return ds


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_named_attributes_are_gone_from_the_stored_input():
    ds = _identifying_ct()
    up = check_upload("scan.dcm", _bytes(ds), 10**7, 10**7, KEY)
    stored = up.files[0][1]
    out = pydicom.dcmread(io.BytesIO(stored))
    for keyword in ("AdmissionID", "MedicalAlerts", "StudyComments"):
        assert keyword not in out and keyword not in out.ReferencedImageSequence[0]
    for text in (b"ADM-99172", b"Penicillin", b"follow-up", b"nested", b"private secret"):
        assert text not in stored
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out.SOPInstanceUID  # references kept
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    np.testing.assert_array_equal(out.pixel_array, ds.pixel_array)


def _without_uids(ds: Dataset, instance: int) -> bytes:
    """A slice as some exports write it: empty SOP instance/class, study and series UIDs."""
    ds = copy.deepcopy(ds)
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(instance)]
    ds.PixelData = (ds.pixel_array + instance).astype(ds.pixel_array.dtype).tobytes()
    raw = _bytes(ds)
    bad = pydicom.dcmread(io.BytesIO(raw))
    for kw in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(bad, kw, "")
    bad.file_meta.MediaStorageSOPInstanceUID = ""
    buf = io.BytesIO()
    bad.save_as(buf)  # not enforce_file_format: this is the broken file we receive
    return buf.getvalue()


def test_missing_uids_are_generated_consistently():
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    first = [pydicom.dcmread(io.BytesIO(check_upload(f"s{i}.dcm", _without_uids(base, i), 10**7, 10**7, KEY)
                                        .files[0][1])) for i in (1, 2)]
    again = pydicom.dcmread(io.BytesIO(check_upload("s1.dcm", _without_uids(base, 1), 10**7, 10**7, KEY).files[0][1]))
    a, b = first
    assert a.SOPClassUID == pydicom.uid.CTImageStorage  # from the modality
    assert a.SOPInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert again.SOPInstanceUID == a.SOPInstanceUID and again.SeriesInstanceUID == a.SeriesInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.file_meta.MediaStorageSOPClassUID == a.SOPClassUID


def _totalsegmentator(shared_data: Path) -> list[Path]:
    folder = shared_data / "ct" / "totalsegmentator-example" / "dicom"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not available")
    return sorted(p for p in folder.iterdir() if p.is_file())


def _zip(paths: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in paths:
            zf.write(p, p.name)
    return buf.getvalue()


def test_real_ct_slices_with_empty_uids_are_accepted(shared_data):
    slices = _totalsegmentator(shared_data)
    assert pydicom.dcmread(slices[0]).SOPInstanceUID == ""  # the defect's input: empty SOP Instance UID
    for p in slices:
        up = check_upload(p.name, p.read_bytes(), 10**8, 10**8, KEY)
        ds = pydicom.dcmread(io.BytesIO(up.files[0][1]))
        assert ds.SOPInstanceUID and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    series = check_upload("series.zip", _zip(slices), 10**8, 10**8, KEY)
    stored = [pydicom.dcmread(io.BytesIO(blob)) for _, blob in series.files]
    assert len({d.SeriesInstanceUID for d in stored}) == 1 and len({d.SOPInstanceUID for d in stored}) == len(slices)


def test_real_ct_series_upload_and_dicom_seg_export(shared_data, alice, app, tmp_path):
    """Through the API (HTTP 500 before), then the DICOM-SEG export of a mask on the stored slices."""
    import highdicom as hd

    from medattn.app.db import Case
    from medattn.app.exports import export_mask

    slices = _totalsegmentator(shared_data)
    r = alice.post("/api/cases", files={"files": ("series.zip", _zip(slices))}, data={"pipeline": "denoise"},
                   headers={"X-CSRF-Token": alice.csrf})
    assert r.status_code == 202, r.text
    case_id = r.json()["cases"][0]["id"]
    state = app.state.medattn
    with state.db.session() as s:
        case = s.get(Case, case_id)
        names = [f.name for f in case.files if f.kind == "input"]
        assert len(names) == len(slices)
        first = pydicom.dcmread(state.store.path(case_id, names[0]))
        mask = np.zeros((len(names), int(first.Rows), int(first.Columns)), np.uint8)
        mask[len(names) // 2, 200:260, 200:260] = 1
        np.save(tmp_path / "mask_volume.npy", mask)
        state.store.add_file(s, case, "mask_volume", tmp_path / "mask_volume.npy")
        case.meta = {"slice_files": names}
        data, media_type, _ = export_mask(case, state.store, "dicom-seg")
    seg = hd.seg.segread(io.BytesIO(data))
    assert media_type == "application/dicom" and seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert str(seg.PatientName) == "" and "AdmissionID" not in seg


PATIENT_FILE = "Doe_Johnathan_PID-7734219.dcm"


def _upload_named(client, name: str = PATIENT_FILE) -> dict:
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    r = client.post("/api/cases", files={"files": (name, raw)}, data={"pipeline": "denoise"},
                    headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 202, r.text
    return r.json()["cases"][0]


def test_patient_file_name_is_not_kept(alice, app, settings):
    from medattn.app.db import Case
    from medattn.app.reports import build_report

    case = _upload_named(alice)
    listing = alice.get(f"/api/cases/{case['id']}").text + alice.get("/api/cases").text + alice.get("/").text
    stored = sorted(p.name for p in (settings.cases_dir / case["id"]).iterdir())
    assert stored == [f"{case['id']}-1.dcm"]
    state = app.state.medattn
    with state.db.session() as s:
        pdf = build_report(s.get(Case, case["id"]), state.store)
    state.db.engine.dispose()
    db_files = [p.read_bytes() for p in settings.data_dir.glob("medattn.db*")] if not settings.db_url else []
    for needle in ("Johnathan", "7734219"):
        assert needle not in listing
        assert needle.encode() not in pdf
        assert not any(needle.encode() in blob for blob in db_files)
    assert case["input_name"] == f"{case['id']}.dcm" and case["title"] == f"Case {case['id'][:8]}"


def test_operator_may_keep_file_names(settings, tmp_path):
    from fastapi.testclient import TestClient

    from medattn.app.web import create_app

    from .conftest import login, make_user

    settings.keep_file_names = True
    app = create_app(settings, start_worker=False)
    make_user(app, "carol")
    with TestClient(app) as c:
        c.csrf = login(c, "carol")
        case = _upload_named(c)
    assert case["input_name"] == PATIENT_FILE
    assert [p.name for p in (settings.cases_dir / case["id"]).iterdir()] == ["Doe_Johnathan_PID-7734219.dcm"]


def test_stored_name_keeps_the_extension():
    from medattn.app.naming import stored_name

    assert stored_name("abc", 1, "x.nii.gz", keep=False) == "abc-1.nii.gz"
    assert stored_name("abc", 7, "slice_0006.dcm", keep=False, count=20) == "abc-07.dcm"
    assert stored_name("abc", 1, "Doe.png", keep=True) == "Doe.png"


def test_denoised_dicom_is_written_from_the_deidentified_input(settings):
    """The denoised DICOM derives from the stored (de-identified) slices: nothing of table E.1-1 returns."""
    import torch
    from fastapi.testclient import TestClient

    from medattn.app.web import create_app
    from medattn.models import create
    from medattn.models.hub import save_bundled

    from .conftest import login, make_user, wait_done

    settings.ensure_dirs()
    torch.manual_seed(0)
    opts = {"channels": [8, 16, 32], "blocks": [1, 1, 1], "reduction": 4}
    save_bundled(create("cadn", **opts), "tiny-ldct", opts,
                 {"model": "cadn", "task": "denoising", "version": "t", "modality": ["ct"]}, folder=settings.models_dir)
    app = create_app(settings, start_worker=True)
    make_user(app, "dora")
    with TestClient(app) as c:
        c.csrf = login(c, "dora")
        r = c.post("/api/cases", files={"files": (PATIENT_FILE, _bytes(_identifying_ct()))},
                   data={"pipeline": "denoise", "model": "tiny-ldct"}, headers={"X-CSRF-Token": c.csrf})
        assert r.status_code == 202, r.text
        done = wait_done(c, r.json()["cases"][0]["id"])
        assert done["status"] == "done", done["message"]
        blob = c.get(f"/api/cases/{done['id']}/files/denoised.dcm").content
    out = pydicom.dcmread(io.BytesIO(blob))
    assert out.ImageType[0] == "DERIVED" and out.PatientIdentityRemoved == "YES"
    for keyword in ("AdmissionID", "MedicalAlerts", "StudyComments", "InstitutionName"):
        assert keyword not in out
    for text in (b"ADM-99172", b"Penicillin", b"follow-up", b"private secret", b"Johnathan"):
        assert text not in blob
