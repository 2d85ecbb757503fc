"""Issue 18, robustness: failures answered 4xx naming the file, bounded admission (a 202 job always
runs), the whole request bounded from its headers, sign-in throttling, revocable sessions, offline
API docs, job scratch folders swept at start, PyTorch threads per worker."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import io
import re
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from medattn.app.db import Case, Database
from medattn.app.jobs import JobQueue, QueueFull, threads_per_worker
from medattn.app.settings import AppSettings
from medattn.app.web import create_app

from .conftest import login, make_user


def png_bytes(h: int = 16, w: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def post_case(client: TestClient, name: str, data: bytes, pipeline: str = "segment"):
    return client.post("/api/cases", files={"files": (name, data)}, data={"pipeline": pipeline},
                       headers={"X-CSRF-Token": client.csrf})


def n_cases(app) -> int:
    with app.state.medattn.db.session() as s:
        return s.scalar(select(func.count()).select_from(Case))


# ---------------------------------------------------------------- defect 2: 4xx naming the file, never 500


def test_file_name_over_255_bytes_is_accepted(alice, app):
    name = "é" * 200 + ".png"  # 405 bytes in UTF-8
    r = post_case(alice, name, png_bytes())
    assert r.status_code == 202, r.text
    case = r.json()["cases"][0]
    assert all(len(f["name"].encode()) <= 255 for f in case["files"])


@pytest.mark.parametrize(("h", "w", "problem"), [(1, 1, "too small"), (20, 400, "strip")])
def test_thumbnail_or_strip_upload_is_400_naming_the_file(alice, app, h, w, problem):
    """A 1x1 picture or a 20x400 strip is no image to analyse: refused at upload, nothing stored."""
    r = post_case(alice, "odd.png", png_bytes(h, w))
    assert r.status_code == 400, r.text
    assert "odd.png" in r.json()["detail"] and problem in r.json()["detail"]
    assert n_cases(app) == 0


def test_deidentification_failure_is_400_naming_the_file(alice, app, monkeypatch):
    import medattn.app.deid as deid

    def broken(ds, key):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(deid, "deidentify", broken)
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    r = post_case(alice, "scan-0001.dcm", raw)
    assert r.status_code == 400, r.text
    assert "scan-0001.dcm" in r.json()["detail"] and "synthetic failure" in r.json()["detail"]
    assert n_cases(app) == 0


def test_dicom_with_empty_uids_never_gives_500(alice, app):
    """Empty SOPInstanceUID (as in the real TotalSegmentator slices): accepted once de-identification
    generates the UID, and never an HTTP 500 either way."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ""
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    r = post_case(alice, "empty-uid.dcm", buf.getvalue())
    assert r.status_code in (202, 400), r.text
    if r.status_code == 400:
        assert r.json()["detail"].startswith("empty-uid.dcm: ")


def test_mr_dicom_upload_is_not_500(alice):
    r = post_case(alice, "mr.dcm", Path(get_testdata_file("MR_small.dcm")).read_bytes())
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert "mr.dcm" in r.json()["detail"]


def _real_ct_dir(shared_data: Path) -> Path:
    d = shared_data / "ct" / "totalsegmentator-example" / "dicom"
    if not d.is_dir():
        pytest.skip(f"{d} is not available")
    return d


def test_real_ct_dicom_uploads_single_and_zip(alice, shared_data):
    """The real CT slices (empty SOPInstanceUID) upload as one file and as a ZIP series: 202, not 500.

    Needs UID generation in de-identification (deid.py, another part of issue 18)."""
    slices = sorted(_real_ct_dir(shared_data).iterdir())
    r = post_case(alice, slices[0].name, slices[0].read_bytes(), pipeline="denoise")
    assert r.status_code == 202, r.text
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in slices[:5]:
            zf.writestr(p.name, p.read_bytes())
    r = post_case(alice, "series.zip", buf.getvalue(), pipeline="denoise")
    assert r.status_code == 202, r.text
    assert r.json()["cases"][0]["input_format"] == "dicom-series"


def _seg_case(app, tmp_path, sources: list[pydicom.Dataset]) -> Case:
    state = app.state.medattn
    with state.db.session() as s:
        make_user(app, "segowner")
        from medattn.app.db import User

        uid = s.scalar(select(User.id).where(User.username == "segowner"))
        case = Case(owner_id=uid, pipeline="segment", status="done", input_name="ct.zip",
                    input_format="dicom-series", meta={}, results={})
        s.add(case)
        s.flush()
        names = []
        for i, ds in enumerate(sources):
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=False)
            names.append(f"slice_{i:04d}.dcm")
            state.store.add_bytes(s, case, "input", names[-1], buf.getvalue())
        case.meta = {"slice_files": names}
        rows, cols = int(sources[0].Rows), int(sources[0].Columns)
        mask = np.zeros((len(sources), rows, cols), np.uint8)
        mask[:, 10:20, 10:20] = 1
        npy = io.BytesIO()
        np.save(npy, mask)
        state.store.add_bytes(s, case, "mask_volume", "mask_volume.npy", npy.getvalue())
        s.flush()
        s.refresh(case)
        _ = case.files
        return case


def test_dicom_seg_export_fills_empty_sop_uids(app, tmp_path):
    from medattn.app.exports import export_mask

    sources = []
    for i in range(2):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPClassUID = ""
        ds.SOPInstanceUID = ""
        ds.file_meta.MediaStorageSOPClassUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        sources.append(ds)
    case = _seg_case(app, tmp_path, sources)
    data, media_type, _ = export_mask(case, app.state.medattn.store, "dicom-seg")
    seg = pydicom.dcmread(io.BytesIO(data))
    assert seg.Modality == "SEG" and media_type == "application/dicom"
    refs = [r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert len(set(refs)) == 2 and all(refs)


def test_export_failure_is_422_naming_the_case(alice, app, tmp_path):
    from medattn.app.db import User

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    case = _seg_case(app, tmp_path, [ds, ds])
    with app.state.medattn.db.session() as s:  # hand it to alice, and break it: 2 mask slices, 1 source
        c = s.get(Case, case.id)
        c.owner_id = s.scalar(select(User.id).where(User.username == "alice"))
        c.meta = {"slice_files": ["slice_0000.dcm"]}
    r = alice.get(f"/api/cases/{case.id}/export/dicom-seg")
    assert r.status_code == 422, r.text
    assert case.id[:8] in r.json()["detail"] and "ct.zip" in r.json()["detail"]


# ---------------------------------------------------------------- defect 3: admission, pool, request bound


def test_full_queue_answers_503_with_retry_after_and_stores_nothing(tmp_path):
    app = create_app(AppSettings(data_dir=tmp_path / "d", queue_size=2, max_upload_mb=5), start_worker=False)
    make_user(app, "alice")
    with TestClient(app) as c:
        c.csrf = login(c, "alice")
        assert post_case(c, "a.png", png_bytes()).status_code == 202
        assert post_case(c, "b.png", png_bytes()).status_code == 202
        r = post_case(c, "c.png", png_bytes())
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert n_cases(app) == 2
        assert len(list((tmp_path / "d" / "cases").iterdir())) == 2


def test_every_admitted_job_runs_under_concurrent_submission(tmp_path):
    """40 threads race for 8 places: each admitted job runs exactly once, the others get QueueFull,
    and nothing is left waiting with an idle worker."""
    db = Database(f"sqlite:///{tmp_path / 'q.db'}")
    ran: list[str] = []
    lock = threading.Lock()

    def runner(case_id: str, progress) -> None:
        time.sleep(0.01)
        with lock:
            ran.append(case_id)

    from medattn.app.db import User

    with db.session() as s:
        s.add(User(id=1, username="u", password_hash="x"))
    jobs = JobQueue(db, runner, maxsize=8, workers=2)
    jobs.start()
    barrier = threading.Barrier(40)

    def client(i: int) -> str | None:
        barrier.wait()
        try:
            with jobs.admit(1) as ticket:
                with db.session() as s:
                    s.add(Case(id=f"case-{i:02d}", owner_id=1, pipeline="segment", meta={}, results={}))
                jobs.submit(f"case-{i:02d}", ticket)
                return f"case-{i:02d}"
        except QueueFull:
            return None

    with cf.ThreadPoolExecutor(40) as pool:
        admitted = [c for c in pool.map(client, range(40)) if c]
    deadline = time.time() + 20
    while jobs.pending and time.time() < deadline:
        time.sleep(0.02)
    jobs.stop()
    assert 0 < len(admitted) <= 40
    assert sorted(ran) == sorted(admitted)
    assert jobs.pending == 0


def test_unused_admission_places_are_given_back(tmp_path):
    jobs = JobQueue(Database(f"sqlite:///{tmp_path / 'q.db'}"), lambda cid, p: None, maxsize=2)
    with pytest.raises(RuntimeError), jobs.admit(2):
        raise RuntimeError("upload refused")
    assert jobs.pending == 0
    with jobs.admit(2):
        pass
    with pytest.raises(QueueFull), jobs.admit(3):
        pass


def test_jobs_left_queued_or_running_run_at_next_start_even_beyond_the_queue_size(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'q.db'}")
    from medattn.app.db import User

    with db.session() as s:
        s.add(User(id=1, username="u", password_hash="x"))
        for i in range(5):
            s.add(Case(id=f"c{i}", owner_id=1, pipeline="segment", status="running" if i == 0 else "queued",
                       meta={}, results={}))
    ran: list[str] = []
    jobs = JobQueue(db, lambda cid, p: ran.append(cid), maxsize=2)
    jobs.start()
    deadline = time.time() + 20
    while len(ran) < 5 and time.time() < deadline:
        time.sleep(0.02)
    jobs.stop()
    assert sorted(ran) == [f"c{i}" for i in range(5)]


def test_upload_checks_hold_no_database_connection(alice, app, monkeypatch):
    import medattn.app.web as web

    seen: list[int] = []
    real = web.check_upload

    def spy(*args, **kwargs):
        seen.append(app.state.medattn.db.engine.pool.checkedout())
        return real(*args, **kwargs)

    monkeypatch.setattr(web, "check_upload", spy)
    assert post_case(alice, "a.png", png_bytes()).status_code == 202
    assert seen == [0]


def test_database_pool_is_sized_for_load(tmp_path):
    from medattn.app.db import MAX_OVERFLOW, POOL_SIZE

    engine = Database(f"sqlite:///{tmp_path / 'p.db'}").engine
    assert engine.pool.size() == POOL_SIZE >= 20 and engine.pool._max_overflow == MAX_OVERFLOW >= 30


def test_whole_request_is_bounded_not_only_each_file(tmp_path):
    app = create_app(AppSettings(data_dir=tmp_path / "d", max_upload_mb=5, max_request_mb=1), start_worker=False)
    make_user(app, "alice")
    noise = (np.random.default_rng(0).random((420, 420, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    big = buf.getvalue()
    assert 0.5e6 < len(big) < 1e6  # each file alone is allowed
    with TestClient(app) as c:
        c.csrf = login(c, "alice")
        r = c.post("/api/cases", files=[("files", ("a.png", big)), ("files", ("b.png", big))],
                   data={"pipeline": "segment"}, headers={"X-CSRF-Token": c.csrf})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert n_cases(app) == 0


def _asgi(app, method: str, path: str, headers: dict[str, str],
          chunk: int = 1024) -> tuple[int, dict[str, str], bool]:
    """Call the app with headers only; the body (8 MB in chunks) 'arrives' only if the app asks for it."""
    read = False
    left = 8_000_000

    async def receive():
        nonlocal read, left
        read = True
        left -= chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": left > 0}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, read


def test_oversized_or_unauthenticated_post_is_refused_from_its_headers(app):
    mp = {"content-type": "multipart/form-data; boundary=x"}
    status, _, read = _asgi(app, "POST", "/api/cases", {**mp, "content-length": str(600_000_000)})
    assert status == 413 and not read
    status, headers, read = _asgi(app, "POST", "/api/cases", {**mp, "content-length": "4000000"})
    assert status == 401 and not read and headers.get("www-authenticate") == "Bearer"
    status, _, read = _asgi(app, "POST", "/api/cases", {**mp, "content-length": "4000000",
                                                         "authorization": "Bearer mdt_not-a-token"})
    assert status == 401 and not read


def test_chunked_body_is_cut_off_at_the_request_limit(tmp_path):
    app = create_app(AppSettings(data_dir=tmp_path / "d", max_upload_mb=5, max_request_mb=1), start_worker=False)
    headers = {"content-type": "application/x-www-form-urlencoded", "transfer-encoding": "chunked"}
    status, _, read = _asgi(app, "POST", "/login", headers, chunk=64 * 1024)  # no Content-Length: counted
    assert status == 413 and read


def test_job_scratch_folders_live_under_the_data_dir_and_are_swept_at_start(tmp_path):
    settings = AppSettings(data_dir=tmp_path / "d")
    stale = settings.data_dir / "tmp" / "medattn-case-killed"
    stale.mkdir(parents=True)
    (stale / "half.npy").write_bytes(b"x")
    app = create_app(settings, start_worker=False)
    assert not stale.exists()
    assert app.state.medattn.store.scratch_dir() == settings.data_dir / "tmp"


def test_torch_threads_times_workers_never_exceed_the_cores():
    for cores in (1, 2, 8, 16):
        for workers in (1, 2, 3, 4):
            n = threads_per_worker(workers, cores)
            assert n >= 1 and (n * workers <= cores or n == 1)
    assert threads_per_worker(2, 16) == 8


def test_worker_thread_sets_its_torch_threads(tmp_path, monkeypatch):
    import torch

    seen: list[int] = []
    monkeypatch.setattr("medattn.app.jobs.threads_per_worker", lambda workers: 3 if workers == 2 else 99)
    before = torch.get_num_threads()
    try:
        jobs = JobQueue(Database(f"sqlite:///{tmp_path / 'q.db'}"),
                        lambda cid, p: seen.append(torch.get_num_threads()), maxsize=4, workers=2)
        from medattn.app.db import User

        with jobs.db.session() as s:
            s.add(User(id=1, username="u", password_hash="x"))
            s.add(Case(id="c1", owner_id=1, pipeline="segment", meta={}, results={}))
        jobs.start()
        deadline = time.time() + 10
        while not seen and time.time() < deadline:
            time.sleep(0.02)
        jobs.stop()
    finally:
        torch.set_num_threads(before)
    assert seen == [3]


# ---------------------------------------------------------------- defect 4: sign-in


def _form_login(c: TestClient, user: str, password: str):
    page = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return c.post("/login", data={"username": user, "password": password, "csrf_token": token},
                  follow_redirects=False)


def test_login_is_throttled_per_account(tmp_path):
    app = create_app(AppSettings(data_dir=tmp_path / "d", login_max_failures=3), start_worker=False)
    make_user(app, "carol")
    with TestClient(app) as c:
        for _ in range(3):
            assert _form_login(c, "carol", "wrong password").status_code == 200
        r = _form_login(c, "carol", "correct horse")  # even the right password, while throttled
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in r.text
        assert c.get("/api/me").status_code == 401


def test_login_is_throttled_per_address(tmp_path):
    app = create_app(AppSettings(data_dir=tmp_path / "d", login_max_failures_address=4), start_worker=False)
    make_user(app, "dave")
    with TestClient(app) as c:
        for i in range(4):
            assert _form_login(c, f"nobody{i}", "wrong password").status_code == 200
        r = _form_login(c, "dave", "correct horse")
        assert r.status_code == 429 and "retry-after" in r.headers


def test_throttle_window_expires():
    from medattn.app.security import LoginThrottle

    now = [0.0]
    t = LoginThrottle(per_account=2, per_address=100, window_s=60, clock=lambda: now[0])
    t.failed("eve", "1.2.3.4")
    t.failed("eve", "1.2.3.4")
    assert t.retry_after("EVE", "5.6.7.8") == 60
    now[0] = 30.5
    assert t.retry_after("eve", "5.6.7.8") == 30
    now[0] = 61
    assert t.retry_after("eve", "5.6.7.8") == 0


def test_sign_out_revokes_the_session_server_side(app):
    make_user(app, "frank")
    with TestClient(app) as c:
        csrf = login(c, "frank")
        stolen = dict(c.cookies)
        assert c.get("/api/me").status_code == 200
        assert c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    with TestClient(app, cookies=stolen) as thief:  # the old cookie, replayed after sign-out
        assert thief.get("/api/me").status_code == 401


# ---------------------------------------------------------------- defect 6: form errors, offline docs


def test_upload_form_errors_answer_4xx_with_the_form(alice):
    r = alice.post("/cases", files={"files": ("notes.png", b"not an image at all" * 30)},
                   data={"pipeline": "segment", "csrf_token": alice.csrf})
    assert r.status_code == 400
    assert "notes.png" in r.text and 'name="pipeline"' in r.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_use_only_local_assets(app, page):
    with TestClient(app) as c:
        r = c.get(page)
        assert r.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
        urls += re.findall(r'spec-url="([^"]+)"', r.text)
        assert urls
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            assert c.get(url).status_code == 200, url
        assert "cdn" not in r.text.lower() and "https://" not in r.text
