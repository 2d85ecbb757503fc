"""Cases end to end through the API: upload, pipeline run, results, report, exports, restart."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.data import get_testdata_file

from medattn.app.web import create_app

from .conftest import login, make_user, signed_in, wait_done

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "kvasir" / "images"


@pytest.fixture
def client(live_app):
    with signed_in(live_app) as c:
        yield c


def upload(client, path: Path, pipeline: str = "segment", model: str = "tiny-polyp", override: bool = False) -> dict:
    """Upload one file; ``override`` runs a model made for another modality (the polyp stand-in on CT or a
    volume: those tests exercise the pipeline and the exports, not a fitting model)."""
    r = client.post("/api/cases", files={"files": (path.name, path.read_bytes())},
                    data={"pipeline": pipeline, "model": model, "allow_modality_mismatch": str(override).lower()},
                    headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 202, r.text
    return r.json()["cases"][0]


def test_catalog_lists_the_installed_model(client):
    cat = client.get("/api/models").json()
    assert "tiny-polyp" in cat["pipelines"]["segment"]["models"]
    assert cat["pipelines"]["segment"]["available"]


def test_segment_a_jpeg(client):
    img = sorted(SAMPLE.glob("*.jpg"))[0]
    case = upload(client, img)
    assert case["status"] == "queued" and case["model"] == "tiny-polyp"
    done = wait_done(client, case["id"])
    assert done["status"] == "done", done["message"]
    kinds = {f["kind"] for f in done["files"]}
    assert {"input", "preview", "overlay", "mask_rgba", "attention", "mask", "mask_volume"} <= kinds
    w, h = Image.open(img).size
    mask = np.asarray(Image.open(io.BytesIO(client.get(f"/api/cases/{case['id']}/files/mask.png").content)))
    assert mask.shape == (h, w)
    from scipy import ndimage

    labels, _ = ndimage.label(mask > 127, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    kept = sizes[sizes >= done["results"]["min_lesion_area_px"]]
    assert sorted(les["area_px"] for les in done["results"]["lesions"]) == sorted(kept.tolist())
    page = client.get(f"/cases/{case['id']}").text
    assert "Mask overlay" in page and 'id="opacity"' in page and "does not replace a clinician" in page

    pdf = client.get(f"/api/cases/{case['id']}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    png = client.get(f"/api/cases/{case['id']}/export/png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    nii = client.get(f"/api/cases/{case['id']}/export/nifti")
    vol = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(nii.content))
    assert vol.shape == (w, h, 1)
    np.testing.assert_array_equal(np.asarray(vol.dataobj)[..., 0].T > 0, mask > 127)
    assert client.get(f"/api/cases/{case['id']}/export/dicom-seg").status_code == 409


def test_list_search_and_filters(client):
    imgs = sorted(SAMPLE.glob("*.jpg"))[:2]
    ids = [upload(client, p)["id"] for p in imgs]
    for cid in ids:
        wait_done(client, cid)
    stem = ids[0][:8]  # uploaded names are not kept (patient data): the default title holds the case id
    found = client.get("/api/cases", params={"q": stem}).json()["cases"]
    assert [c["id"] for c in found] == [ids[0]]
    assert len(client.get("/api/cases", params={"status": "done"}).json()["cases"]) == 2
    assert client.get("/api/cases", params={"pipeline": "denoise"}).json()["cases"] == []
    html = client.get("/", params={"q": stem}).text
    assert ids[0] in html and ids[1] not in html


def test_dicom_case_gives_dicom_seg(client, tmp_path):
    import highdicom as hd

    src = Path(get_testdata_file("CT_small.dcm"))
    case = upload(client, src, override=True)
    done = wait_done(client, case["id"])
    assert done["status"] == "done", done["message"]
    assert done["modality"] == "ct"  # the guard's vocabulary (the DICOM tag stays in the case meta)
    stored = client.get(f"/api/cases/{case['id']}/files/{done['files'][0]['name']}").content
    ds = pydicom.dcmread(io.BytesIO(stored))
    assert str(ds.PatientName) == "" and ds.PatientIdentityRemoved == "YES"
    r = client.get(f"/api/cases/{case['id']}/export/dicom-seg")
    assert r.status_code == 200, r.text
    seg = hd.seg.segread(io.BytesIO(r.content))
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ds.SeriesInstanceUID
    assert done["results"]["spacing"] is not None
    les = done["results"]["lesions"]
    if les:
        assert les[0]["area_mm2"] == pytest.approx(les[0]["area_px"] * np.prod(done["results"]["spacing"]))


def test_zipped_series(client, tmp_path):
    raw = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(raw)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            ds.InstanceNumber = i + 1
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.ImagePositionPatient = [0.0, 0.0, float(i) * 5]
            b = io.BytesIO()
            ds.save_as(b)
            zf.writestr(f"s{i}.dcm", b.getvalue())
    p = tmp_path / "series.zip"
    p.write_bytes(buf.getvalue())
    done = wait_done(client, upload(client, p, override=True)["id"])
    assert done["status"] == "done", done["message"]
    assert done["input_format"] == "dicom-series" and done["results"]["shown_slice"] in (0, 1, 2)
    vol = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(
        client.get(f"/api/cases/{done['id']}/export/nifti").content))
    assert vol.shape[2] == 3


def test_bad_upload_is_a_clear_400(client, tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image")
    r = client.post("/api/cases", files={"files": (p.name, p.read_bytes())}, data={"pipeline": "segment"},
                    headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 400 and "notes.png" in r.json()["detail"]
    r = client.post("/api/cases", files={"files": (p.name, b"x")}, data={"pipeline": "nope"},
                    headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 400 and "unknown pipeline" in r.json()["detail"]
    r = client.post("/api/cases", files={"files": ("a.jpg", sorted(SAMPLE.glob("*.jpg"))[0].read_bytes())},
                    data={"pipeline": "segment", "model": "no-such-model"}, headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 400 and "cannot run" in r.json()["detail"]


def test_restart_keeps_cases_and_resumes_unfinished(settings, live_app):
    make_user(live_app, "alice")
    img = sorted(SAMPLE.glob("*.jpg"))[0]
    with TestClient(live_app) as c:
        c.csrf = login(c, "alice")
        done = wait_done(c, upload(c, img)["id"])
    # a second case "interrupted": left running in the database by a killed server
    from medattn.app.db import Case

    with live_app.state.medattn.db.session() as s:
        running = s.get(Case, done["id"])
        clone = Case(owner_id=running.owner_id, pipeline="segment", model_name="tiny-polyp", status="running",
                     input_name=img.name, input_format="jpeg", meta={}, results={})
        s.add(clone)
        s.flush()
        live_app.state.medattn.store.add_bytes(s, clone, "input", "input.jpg", img.read_bytes())
        clone_id = clone.id
    app2 = create_app(settings, start_worker=True)
    with TestClient(app2) as c2:
        c2.csrf = login(c2, "alice")
        again = c2.get(f"/api/cases/{done['id']}").json()
        assert again["status"] == "done" and {f["name"] for f in again["files"]} == {f["name"] for f in done["files"]}
        for f in again["files"]:
            assert c2.get(f["url"]).status_code == 200
        resumed = wait_done(c2, clone_id)
        assert resumed["status"] == "done"


@pytest.fixture
def den_client(settings):
    """An app with an (untrained) small denoiser and the tiny segmenter installed."""
    import torch

    from medattn.models import create
    from medattn.models.hub import save_bundled

    from .conftest import install_tiny_model

    settings.ensure_dirs()
    install_tiny_model(settings)
    torch.manual_seed(0)
    opts = {"channels": [8, 16, 32], "blocks": [1, 1, 1], "reduction": 4}
    save_bundled(create("cadn", **opts), "tiny-ldct", opts, {"model": "cadn", "task": "denoising", "version": "t",
                                                         "modality": ["ct"]},
                 folder=settings.models_dir)
    app = create_app(settings, start_worker=True)
    make_user(app, "alice")
    with TestClient(app) as c:
        c.csrf = login(c, "alice")
        yield c


def test_denoise_dicom_gives_a_derived_dicom(den_client):
    cat = den_client.get("/api/models").json()["pipelines"]
    assert "tiny-ldct" in cat["denoise"]["models"] and cat["denoise+segment"]["available"]
    src = Path(get_testdata_file("CT_small.dcm"))
    done = wait_done(den_client, upload(den_client, src, pipeline="denoise", model="tiny-ldct")["id"])
    assert done["status"] == "done", done["message"]
    names = {f["name"] for f in done["files"]}
    assert {"preview.png", "processed.png", "denoised.dcm"} <= names
    out = pydicom.dcmread(io.BytesIO(den_client.get(f"/api/cases/{done['id']}/files/denoised.dcm").content))
    original = pydicom.dcmread(src)
    assert out.ImageType[0] == "DERIVED" and out.SeriesInstanceUID != original.SeriesInstanceUID
    assert out.pixel_array.shape == original.pixel_array.shape and str(out.PatientName) == ""
    assert "noise SD before (HU, estimated)" in done["results"]["metrics"]


def test_denoise_then_segment_chain(den_client):
    done = wait_done(den_client, upload(den_client, Path(get_testdata_file("CT_small.dcm")),
                                        pipeline="denoise+segment", model="tiny-ldct+tiny-polyp",
                                        override=True)["id"])
    assert done["status"] == "done", done["message"]
    kinds = {f["kind"] for f in done["files"]}
    assert {"preview", "processed", "overlay", "mask", "processed_file"} <= kinds
    assert "lesions" in done["results"] and "metrics" in done["results"]


def test_denoise_refuses_non_ct(den_client):
    """A colour picture is refused at upload (400); forced through, the denoiser still refuses it."""
    img = sorted(SAMPLE.glob("*.jpg"))[0]
    r = den_client.post("/api/cases", files={"files": (img.name, img.read_bytes())},
                        data={"pipeline": "denoise", "model": "tiny-ldct"}, headers={"X-CSRF-Token": den_client.csrf})
    assert r.status_code == 400 and "does not take endoscopy" in r.json()["detail"]
    done = wait_done(den_client, upload(den_client, img, pipeline="denoise", model="tiny-ldct", override=True)["id"])
    assert done["status"] == "failed" and "gray CT" in done["message"]


def test_enhance_pipeline(settings, tmp_path):
    """CAWE heat map, colorized and fused images through the app (untrained small models). The classifier and
    colorizer installed into <data-dir>/models win over the bundled ones; a gray input is colorized, a colour
    input keeps its colours."""
    import torch

    from medattn.models import create
    from medattn.models.hub import save_bundled

    settings.ensure_dirs()
    torch.manual_seed(0)
    cls_opts = {"backbone": "resnet18", "in_channels": 1, "num_classes": 1, "width": 0.25}
    save_bundled(create("lesion_classifier", **cls_opts), "tiny-cawe", cls_opts,
                 {"model": "lesion_classifier", "task": "classification", "input_size": [64, 64],
                  "modality": ["endoscopy", "dermoscopy", "gray"]},
                 folder=settings.models_dir)
    col_opts = {"encoder": "light", "width": 0.25}
    save_bundled(create("colorizer", **col_opts), "tiny-color", col_opts,
                 {"model": "colorizer", "task": "colorization", "input_size": [64, 64]}, folder=settings.models_dir)
    colour = sorted(SAMPLE.glob("*.jpg"))[0]
    gray = tmp_path / "gray.png"
    Image.open(colour).convert("L").save(gray)
    app = create_app(settings, start_worker=True)
    make_user(app, "alice")
    with TestClient(app) as c:
        c.csrf = login(c, "alice")
        enhance = c.get("/api/models").json()["pipelines"]["enhance"]
        assert enhance["default"] == "tiny-cawe" and "cawe-lesion" in enhance["models"]  # installed first
        done = wait_done(c, upload(c, gray, pipeline="enhance", model="")["id"])
        assert done["status"] == "done", done["message"]
        assert done["model"] == "tiny-cawe"
        kinds = {f["kind"] for f in done["files"]}
        assert {"preview", "processed", "attention", "colorized", "processed_file"} <= kinds
        assert done["results"]["metrics"]["colorizer"] == "tiny-color"  # the installed one, not the bundled one
        assert "Colorized" in c.get(f"/cases/{done['id']}").text
        assert c.get(f"/api/cases/{done['id']}/report.pdf").content.startswith(b"%PDF")
        done = wait_done(c, upload(c, colour, pipeline="enhance", model="tiny-cawe")["id"])
        assert done["status"] == "done", done["message"]
        assert "colorized" not in {f["kind"] for f in done["files"]}
        assert done["results"]["metrics"]["colorizer"].startswith("none (colour input kept its colours; tiny-color")


def test_nifti_volume_case(client, tmp_path):
    """A NIfTI volume is segmented slice by slice; the NIfTI export keeps the input's affine."""
    affine = np.diag([0.8, 0.7, 2.5, 1.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    vol = (np.random.default_rng(0).random((40, 32, 3)) * 200 - 100).astype(np.int16)  # (x, y, z)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), path)
    done = wait_done(client, upload(client, path, override=True)["id"])
    assert done["status"] == "done", done["message"]
    assert done["input_format"] == "nifti" and done["results"]["spacing"] == pytest.approx([0.7, 0.8])
    out = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(
        client.get(f"/api/cases/{done['id']}/export/nifti").content))
    assert out.shape == vol.shape
    np.testing.assert_allclose(out.affine, affine)
