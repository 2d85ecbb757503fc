"""The case viewer: radiological orientation of NIfTI volumes, per-slice layers and their API, the pages."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medattn.app.viewer import display_orientation, orient, read_info, to_file_order, to_radiological
from medattn.io import read_image

from . import test_app_cases
from .conftest import served, signed_in, wait_done

den_client = test_app_cases.den_client  # the fixture with a small denoiser installed
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "kvasir" / "images"
EXAMPLE_CT = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct" / "totalsegmentator-example" / "example_ct.nii.gz"


def _marked_volume() -> np.ndarray:
    """(i, j, k) = (20, 16, 3) voxels with two markers: 100 along i = 0, 200 along j = 15."""
    vol = np.zeros((20, 16, 3), np.int16)
    vol[0, 8, :] = 100  # i = 0
    vol[10, 15, :] = 200  # j = 15
    return vol


def _save(tmp_path: Path, vol: np.ndarray, affine: np.ndarray, name: str = "scan.nii.gz") -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(vol, affine), path)
    return path


def _world(affine: np.ndarray, z: int, row: int, col: int) -> np.ndarray:
    return (np.asarray(affine) @ np.array([col, row, z, 1.0]))[:3]


def test_ras_volume_is_shown_anterior_up_patient_right_on_the_left(tmp_path):
    # RAS: i runs to the patient's right, j to anterior. Voxel i=0 is the patient's far LEFT, j=15 far ANTERIOR.
    path = _save(tmp_path, _marked_volume(), np.diag([1.0, 1.0, 2.0, 1.0]))
    raw = read_image(path)
    shown = to_radiological(raw)
    sl = shown.array[1]
    rows, cols = np.nonzero(sl == 200)
    assert rows.tolist() == [0], "the anterior marker must be on the top row"
    rows, cols = np.nonzero(sl == 100)
    assert cols.tolist() == [19], "the patient's left must be on the screen's right"
    assert nib.aff2axcodes(shown.meta.affine) == ("L", "P", "S")
    # every voxel keeps its world position: the same voxel maps to the same point in space
    for z, r, c in np.random.default_rng(0).integers(0, [3, 16, 20], (20, 3)):
        raw_rc = (15 - r, 19 - c)
        assert shown.array[z, r, c] == raw.array[z, raw_rc[0], raw_rc[1]]
        np.testing.assert_allclose(_world(shown.meta.affine, z, r, c), _world(raw.meta.affine, z, *raw_rc))


def test_lps_volume_and_non_nifti_images_are_unchanged(tmp_path):
    lps = read_image(_save(tmp_path, _marked_volume(), np.diag([-1.0, -1.0, 2.0, 1.0])))
    assert to_radiological(lps) is lps
    png = tmp_path / "a.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(png)
    img = read_image(png)
    assert to_radiological(img) is img


def test_swapped_in_plane_axes_are_transposed_and_spacing_follows(tmp_path):
    # i runs to anterior (0.5 mm), j to the patient's left (0.9 mm): columns must become the x (left) axis.
    affine = np.array([[0, -0.9, 0, 0], [0.5, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1.0]])
    raw = read_image(_save(tmp_path, _marked_volume(), affine))
    how = display_orientation(raw.meta.affine)
    assert how == {"transpose": True, "flip_rows": True, "flip_cols": False}
    shown = to_radiological(raw)
    assert shown.array.shape == (3, 20, 16)
    assert shown.meta.spacing == pytest.approx((2.0, 0.5, 0.9))
    assert nib.aff2axcodes(shown.meta.affine) == ("L", "P", "S")
    np.testing.assert_array_equal(to_file_order(shown.array, how), raw.array)
    np.testing.assert_array_equal(orient(raw.array, how), shown.array)


@pytest.mark.skipif(not EXAMPLE_CT.is_file(), reason="the TotalSegmentator example is not in ../shared")
def test_the_112_slice_example_is_shown_radiologically():
    raw = read_image(EXAMPLE_CT)
    assert nib.aff2axcodes(raw.meta.affine) == ("R", "A", "S")  # as stored: posterior rows first (upside down)
    shown = to_radiological(raw)
    assert shown.array.shape == raw.array.shape == (112, 101, 122)
    assert nib.aff2axcodes(shown.meta.affine) == ("L", "P", "S")
    # the table/couch (dense, posterior) is now at the bottom of the slice, air in front of the body at the top
    sl = shown.array[56].astype(float)
    assert sl[:10].mean() < sl[-25:].mean()


# ----------------------------------------------------------------- API / pages
@pytest.fixture
def client(live_app):
    with signed_in(live_app) as c:
        yield c


def _upload(client, path: Path) -> dict:
    r = client.post("/api/cases", files={"files": (path.name, path.read_bytes())},
                    data={"pipeline": "segment", "model": "tiny-polyp", "allow_modality_mismatch": "true"},  # a stand-in
                    headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 202, r.text
    done = wait_done(client, r.json()["cases"][0]["id"])
    assert done["status"] == "done", done["message"]
    return done


def _slice(client, case_id: str, layer: str, z: int) -> np.ndarray:
    r = client.get(f"/api/cases/{case_id}/slices/{layer}/{z}")
    assert r.status_code == 200, r.text
    shape = tuple(int(s) for s in r.headers["x-shape"].split(","))
    return np.frombuffer(r.content, dtype=np.dtype(r.headers["x-dtype"]).newbyteorder("<")).reshape(shape)


def test_volume_case_serves_oriented_slices_labels_and_attention(client, live_app, tmp_path):
    rng = np.random.default_rng(1)
    vol = (rng.random((40, 32, 5)) * 400 - 200).astype(np.int16)
    vol[2:12, 20:30, 1:4] = 900  # bright block: the untrained model may or may not mark it
    path = _save(tmp_path, vol, np.diag([0.8, 0.7, 2.5, 1.0]))
    done = _upload(client, path)
    cid = done["id"]
    assert {"view_image", "view_labels", "view_attention", "viewer"} <= {f["kind"] for f in done["files"]}
    info = read_info(live_app.state.medattn.store.root / cid)
    assert (info["slices"], info["height"], info["width"], info["colour"]) == (5, 32, 40, False)

    img = _slice(client, cid, "image", 2)
    assert img.dtype == np.int16 and img.shape == (32, 40)
    np.testing.assert_array_equal(img, vol[:, :, 2].T[::-1, ::-1])  # RAS file: rows and columns flipped
    labels = np.stack([_slice(client, cid, "labels", z) for z in range(5)])
    lesions = done["results"]["lesions"]
    assert sorted(int(v) for v in np.unique(labels) if v) == [les["number"] for les in lesions]
    for les in lesions:  # one record per 3D component, its slices as 1-based numbers
        first, last = les["slices"]
        zs = np.nonzero((labels == les["number"]).any((1, 2)))[0]
        assert (first, last) == (zs.min() + 1, zs.max() + 1) and first <= les["slice"] <= last
        assert les["voxels"] == int((labels == les["number"]).sum())
        assert les["volume_ml"] == pytest.approx(les["voxels"] * 2.5 * 0.7 * 0.8 / 1000, rel=1e-3)
    att = _slice(client, cid, "attention", 0)
    assert att.dtype == np.uint8 and att.shape == (32, 40)

    # the NIfTI export is back in the file's voxel order with the file's affine
    out = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(client.get(f"/api/cases/{cid}/export/nifti").content))
    np.testing.assert_allclose(out.affine, np.diag([0.8, 0.7, 2.5, 1.0]))
    mask = np.load(io.BytesIO(client.get(f"/api/cases/{cid}/files/mask_volume.npy").content))  # display order
    np.testing.assert_array_equal(np.asarray(out.dataobj).T > 0, mask[:, ::-1, ::-1] > 0)
    assert not ((labels > 0) & ~mask.astype(bool)).any()  # lesions are the mask less its specks

    assert client.get(f"/api/cases/{cid}/slices/image/5").status_code == 404
    assert client.get(f"/api/cases/{cid}/slices/processed/0").status_code == 404
    assert client.get(f"/api/cases/{cid}/slices/secret/0").status_code == 404

    page = client.get(f"/cases/{cid}").text
    assert 'id="viewer"' in page and 'data-slices="5"' in page and 'id="slice"' in page
    assert 'id="wl-soft"' not in page  # not CT: no CT presets
    assert "<details class=\"model-card\"" in page
    listing = client.get("/").text
    assert f'data-case-id="{cid}"' in listing and 'class="thumb"' in listing


def test_colour_image_case_is_served_as_rgb(client):
    img = sorted(SAMPLE.glob("*.jpg"))[0]
    done = _upload(client, img)
    rgb = _slice(client, done["id"], "image", 0)
    w, h = Image.open(img).size
    assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3)
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(img).convert("RGB")))
    labels = _slice(client, done["id"], "labels", 0)
    assert labels.shape == (h, w) and int(labels.max()) == len(done["results"]["lesions"])
    page = client.get(f"/cases/{done['id']}").text
    assert 'data-colour="1"' in page and 'id="wl-tools"' not in page
    for les in done["results"]["lesions"][:25]:
        assert f'data-lesion="{les["number"]}"' in page


def test_ct_dicom_case_offers_presets_and_the_dicom_window(client, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("CT_small.dcm"))
    done = _upload(client, src)
    page = client.get(f"/cases/{done['id']}").text
    assert 'data-ct="1"' in page and 'id="wl-dicom"' not in page  # CT_small has no window
    assert 'data-wl="40,400"' in page and 'data-wl="-600,1500"' in page and 'data-wl="300,1500"' in page
    ds = pydicom.dcmread(src)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(_slice(client, done["id"], "image", 0), hu.astype(np.int16))

    ds.WindowCenter, ds.WindowWidth = ["50", "-500"], ["350", "1400"]  # two windows: the first is the default
    ds.save_as(tmp_path / "windowed.dcm")
    page = client.get(f"/cases/{_upload(client, tmp_path / 'windowed.dcm')['id']}").text
    assert 'data-window="50.0,350.0"' in page and 'id="wl-dicom"' in page


def test_denoised_ras_volume_is_oriented_like_its_input(den_client, tmp_path):
    """The denoiser re-reads the file: its output must be flipped like the input before it is shown or segmented."""
    z, y, x = np.indices((4, 48, 40))
    hu = np.where((y < 30) & (x < 15), 300, -50) + (z * 10)  # an asymmetric block
    vol = hu.transpose(2, 1, 0).astype(np.int16)  # (x, y, z) for nibabel
    path = _save(tmp_path, vol, np.diag([0.7, 0.7, 2.0, 1.0]))
    r = den_client.post("/api/cases", files={"files": (path.name, path.read_bytes())},
                        data={"pipeline": "denoise+segment", "model": "tiny-ldct+tiny-polyp",
                              "allow_modality_mismatch": "true"},
                        headers={"X-CSRF-Token": den_client.csrf})
    assert r.status_code == 202, r.text
    done = wait_done(den_client, r.json()["cases"][0]["id"])
    assert done["status"] == "done", done["message"]
    image = _slice(den_client, done["id"], "image", 1).astype(float)
    processed = _slice(den_client, done["id"], "processed", 1).astype(float)
    np.testing.assert_array_equal(image, hu[1, ::-1, ::-1])
    assert np.corrcoef(image.ravel(), processed.ravel())[0, 1] > 0.9
    assert np.corrcoef(image[::-1].ravel(), processed.ravel())[0, 1] < 0.5
    page = den_client.get(f"/cases/{done['id']}").text
    assert 'data-base="processed"' in page and 'data-base="image"' in page


def test_another_users_case_slices_are_404(client, live_app):
    done = _upload(client, sorted(SAMPLE.glob("*.jpg"))[0])
    with signed_in(live_app, "bob") as bob:
        r = bob.get(f"/api/cases/{done['id']}/slices/image/0")
        assert r.status_code == 404 and r.content != client.get(f"/api/cases/{done['id']}/slices/image/0").content
    with TestClient(live_app) as anon:
        assert anon.get(f"/api/cases/{done['id']}/slices/image/0").status_code == 401


def test_hu_valued_gray_volume_without_modality_counts_as_ct(tmp_path):
    from medattn.app.viewer import viewer_files
    from medattn.io.base import ImageData, ImageMeta

    hu = np.full((2, 8, 8), -1000, np.int16)
    viewer_files(tmp_path, image=ImageData(hu, ImageMeta(layout="ZHW", format="nifti")))
    assert read_info(tmp_path)["ct"] is True
    viewer_files(tmp_path, image=ImageData(hu + 1200, ImageMeta(layout="ZHW", format="nifti")))
    assert read_info(tmp_path)["ct"] is False


# ------------------------------------------------------------------- browser
def seed_case(settings, username: str, image, prob: np.ndarray, attention: np.ndarray | None = None,
              title: str = "volume", spacing=None, input_format: str = "nifti") -> str:
    """A finished segmentation case written straight into the app's database and store (no model run).

    ``image``: ``ImageData`` as the viewer shows it; ``prob``: (Z, H, W) or (H, W) lesion probability.
    """
    import tempfile

    from sqlalchemy import select

    from medattn.app.db import Case, Database, User
    from medattn.app.storage import CaseStore
    from medattn.app.viewer import viewer_files
    from medattn.inference.lesions import MinSize, find_lesions
    from medattn.inference.render import to_rgb8
    from medattn.io import apply_window, write_image

    labels, lesions = find_lesions(prob, 0.5, spacing, MinSize(px=4))
    volume = prob.ndim == 3
    k = lesions[0]["slice"] - 1 if volume and lesions else 0
    a = image.array[k] if volume else image.array
    preview = to_rgb8(a) if a.dtype == np.uint8 else (apply_window(a, "soft_tissue") * 255 + 0.5).astype(np.uint8)
    db, store = Database(settings.database_url), CaseStore(settings.cases_dir)
    with tempfile.TemporaryDirectory() as tmp, db.session() as s:
        tmp = Path(tmp)
        write_image(tmp / "preview.png", preview)
        files = [("preview", tmp / "preview.png", "preview.png"),
                 *viewer_files(tmp, image=image, labels=labels, attention=attention)]
        user = s.scalar(select(User).where(User.username == username))
        case = Case(owner_id=user.id, title=title, pipeline="segment", model_name="reference-mask", status="done",
                    progress=1.0, input_name=title, input_format=input_format, modality=image.meta.modality,
                    meta={"shape": list(image.array.shape)},
                    results={"lesions": lesions, "min_lesion_area_px": 4, "shown_slice": k,
                             "spacing": list(spacing[-2:]) if spacing else None})
        s.add(case)
        s.flush()
        for kind, path, name in files:
            store.add_file(s, case, kind, path, name)
        s.commit()
        return case.id


def synthetic_ct() -> tuple[object, np.ndarray, np.ndarray]:
    """A 12-slice HU phantom: air, a soft-tissue body, a bone ring, two 'lesions' (one spanning 5 slices)."""
    from medattn.io.base import ImageData, ImageMeta

    z, y, x = np.indices((12, 96, 128))
    body = ((y - 48) / 40) ** 2 + ((x - 64) / 56) ** 2 <= 1
    hu = np.where(body, 40, -1000).astype(np.int16)
    hu[(((y - 48) / 40) ** 2 + ((x - 64) / 56) ** 2 > 0.8) & body] = 700
    prob = np.zeros(hu.shape, np.float32)
    prob[((z - 5) ** 2 / 4 + ((y - 40) / 10) ** 2 + ((x - 50) / 12) ** 2) <= 1] = 0.9
    prob[(z == 8) & ((y - 60) ** 2 + (x - 85) ** 2 <= 16)] = 0.7
    att = np.clip(prob + 0.3 * body, 0, 1)
    image = ImageData(hu, ImageMeta(layout="ZHW", format="nifti", spacing=(2.5, 0.8, 0.8)))
    return image, prob, att


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def browser_server(tmp_path):
    """`medattn serve` in a subprocess with one user and a seeded CT volume case."""
    import os

    from medattn.app.db import Database
    from medattn.app.security import create_user
    from medattn.app.settings import AppSettings

    settings = AppSettings(data_dir=tmp_path / "data")
    settings.ensure_dirs()
    with Database(settings.database_url).session() as s:
        create_user(s, "clinician", "browser-test-pw")
        s.commit()
    image, prob, att = synthetic_ct()
    case_id = seed_case(settings, "clinician", image, prob, att, title="phantom CT", spacing=(2.5, 0.8, 0.8))
    env = {**os.environ, "MEDATTN_DATA_DIR": str(settings.data_dir)}
    with served(env) as base:
        yield base, case_id, settings


def open_browser(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                             args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                   "--disable-background-networking", "--disable-component-update", "--disable-sync"])


def sign_in(page, base: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", "clinician")
    page.fill("input[name=password]", "browser-test-pw")
    page.click("#login-submit")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_browser_volume_viewer(browser_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, case_id, _ = browser_server
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            external: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(base) else external.append(r.url))
            sign_in(page, base)
            row = page.locator(f'tr[data-case-id="{case_id}"]')
            expect(row.locator(".lesion-count")).to_have_text("2")
            expect(row.locator("img.thumb")).to_be_visible()
            row.locator("a").last.click()

            viewer = page.locator("#viewer")
            expect(viewer).to_have_attribute("data-drawn-slice", "6")  # the largest lesion's slice
            expect(page.locator("#slice-number")).to_have_text("Slice 6 / 12")
            expect(viewer).to_have_attribute("data-current-window", "40,400")  # CT: soft tissue first
            canvas = "document.getElementById('view-canvas').toDataURL()"

            page.fill("#slice", "3")
            expect(page.locator("#slice-number")).to_have_text("Slice 3 / 12")
            expect(viewer).to_have_attribute("data-drawn-slice", "3")

            before = page.evaluate(canvas)
            page.click("#wl-lung")
            expect(viewer).to_have_attribute("data-current-window", "-600,1500")
            expect(page.locator("#wl-lung")).to_have_attribute("aria-pressed", "true")
            assert page.evaluate(canvas) != before

            # a table row jumps to its lesion's slice and highlights it; its number is drawn
            page.click('#lesions tr[data-lesion="2"]')
            expect(viewer).to_have_attribute("data-drawn-slice", "9")
            expect(page.locator('#lesions tr[data-lesion="2"]')).to_have_class("selected")
            expect(viewer).to_have_attribute("data-numbers-shown", "2")
            page.click('#lesions tr[data-lesion="1"]')
            expect(viewer).to_have_attribute("data-drawn-slice", "6")

            count_mask = """() => { const c = document.getElementById('view-canvas');
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
              for (let i = 0; i < d.length; i += 4) if (d[i + 1] > d[i] + 60 && d[i + 2] > d[i] + 60) n++;
              return n; }"""  # the highlighted lesion is drawn in cyan
            filled = page.evaluate(count_mask)
            page.check("#outline")
            outlined = page.evaluate(count_mask)
            assert 0 < outlined < filled, (outlined, filled)

            shown = page.evaluate(canvas)
            page.click("#zoom-in")
            assert page.evaluate(canvas) != shown
            page.fill("#attention-opacity", "60")
            expect(page.locator(".colorbar-ramp")).to_be_visible()
            page.locator("#viewport").screenshot(path=tmp_path / "viewer.png")
            assert external == [], f"pages fetched outside resources: {external}"
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_browser_case_list_refreshes_while_a_case_runs(browser_server):
    from playwright.sync_api import expect, sync_playwright
    from sqlalchemy import select

    from medattn.app.db import Case, Database, User

    base, _, settings = browser_server
    db = Database(settings.database_url)
    with db.session() as s:  # a case the worker is running (written here, not submitted: nothing else moves it)
        owner = s.scalar(select(User).where(User.username == "clinician"))
        case = Case(owner_id=owner.id, title="running case", pipeline="segment", status="running", progress=0.4,
                    input_name="x.png", input_format="png", meta={}, results={})
        s.add(case)
        s.commit()
        running_id = case.id
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_page()
            sign_in(page, base)
            row = page.locator(f'tr[data-case-id="{running_id}"]')
            expect(row.locator(".status")).to_have_text("running")
            expect(row.locator(".mini-progress span")).to_have_attribute("style", "width: 40%;", timeout=5000)
            with db.session() as s:
                c = s.get(Case, running_id)
                c.status, c.progress, c.results = "done", 1.0, {"lesions": [{"number": 1}, {"number": 2}]}
                s.commit()
            expect(row.locator(".status")).to_have_text("done", timeout=8000)  # reloaded without a click
            expect(row.locator(".lesion-count")).to_have_text("2")
        finally:
            browser.close()
