"""Sign-in, sessions, CSRF, API tokens, ownership: the application's protections."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medattn.app.db import Case

from .conftest import login, make_user


def png_bytes(h: int = 32, w: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def add_case(app, owner: str, status: str = "done") -> str:
    from sqlalchemy import select

    from medattn.app.db import User

    with app.state.medattn.db.session() as s:
        uid = s.scalar(select(User.id).where(User.username == owner))
        case = Case(owner_id=uid, pipeline="segment", status=status, title=f"{owner}'s case", meta={}, results={})
        s.add(case)
        s.flush()
        return case.id


def test_pages_need_sign_in(app):
    with TestClient(app) as c:
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert c.get("/api/cases").status_code == 401


def test_wrong_password_is_refused(app):
    make_user(app, "carol")
    with TestClient(app) as c:
        with pytest.raises(AssertionError):
            login(c, "carol", "wrong password")
        assert c.get("/api/me").status_code == 401


def test_session_cookie_flags(app):
    make_user(app, "dave")
    with TestClient(app) as c:
        page = c.get("/login")
        import re

        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = c.post("/login", data={"username": "dave", "password": "correct horse", "csrf_token": token},
                   follow_redirects=False)
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie


def test_login_form_needs_csrf(app):
    make_user(app, "erin")
    with TestClient(app) as c:
        c.get("/login")
        r = c.post("/login", data={"username": "erin", "password": "correct horse"}, follow_redirects=False)
        assert r.status_code == 403


def test_state_changing_request_needs_csrf(alice, app):
    cid = add_case(app, "alice")
    assert alice.delete(f"/api/cases/{cid}").status_code == 403
    assert alice.delete(f"/api/cases/{cid}", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert alice.delete(f"/api/cases/{cid}", headers={"X-CSRF-Token": alice.csrf}).status_code == 204


def test_other_users_case_is_404(alice, bob, app):
    cid = add_case(app, "alice")
    assert alice.get(f"/api/cases/{cid}").status_code == 200
    for path in (f"/api/cases/{cid}", f"/api/cases/{cid}/report.pdf", f"/api/cases/{cid}/export/png",
                 f"/api/cases/{cid}/files/input.png", f"/cases/{cid}"):
        assert bob.get(path).status_code == 404, path
    assert bob.delete(f"/api/cases/{cid}", headers={"X-CSRF-Token": bob.csrf}).status_code == 404
    assert cid not in {c["id"] for c in bob.get("/api/cases").json()["cases"]}


def test_admin_sees_every_case(app, alice):
    add_case(app, "alice")
    make_user(app, "root", admin=True)
    with TestClient(app) as c:
        login(c, "root")
        cases = c.get("/api/cases").json()["cases"]
        assert [x["owner"] for x in cases] == ["alice"]


def test_api_token_round_trip(alice, app):
    r = alice.post("/api/tokens", data={"name": "script"}, headers={"X-CSRF-Token": alice.csrf})
    assert r.status_code == 201
    token = r.json()["token"]
    with TestClient(app) as anon:
        auth = {"Authorization": f"Bearer {token}"}
        assert anon.get("/api/me", headers=auth).json()["username"] == "alice"
        # token requests need no CSRF token
        tid = r.json()["id"]
        assert anon.delete(f"/api/tokens/{tid}", headers=auth).status_code == 204
        assert anon.get("/api/me", headers=auth).status_code == 401
        assert anon.get("/api/me", headers={"Authorization": "Bearer mdt_not-a-token"}).status_code == 401
    # only the hash is stored
    from sqlalchemy import select

    from medattn.app.db import ApiToken

    with app.state.medattn.db.session() as s:
        assert all(token not in (t.token_hash, t.prefix) for t in s.scalars(select(ApiToken)))


def test_security_headers(app):
    with TestClient(app) as c:
        r = c.get("/login")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"


def test_pages_use_no_external_assets(alice):
    import re

    for path in ("/", "/cases/new", "/tokens"):
        html = alice.get(path).text
        assert not re.search(r'(src|href)="(https?:)?//', html), path


def test_openapi_lists_case_routes(app):
    with TestClient(app) as c:
        spec = c.get("/openapi.json").json()
        assert "/api/cases" in spec["paths"] and "/api/cases/{case_id}/report.pdf" in spec["paths"]
        assert c.get("/docs").status_code == 200


def test_users_cli_and_first_admin(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("MEDATTN_PASSWORD", "a-long-password")
    data = tmp_path / "d"
    code, out, err = run_cli("users", "create", "--admin", "root", "--data-dir", data)
    assert code == 0, err
    code, _, err = run_cli("users", "create", "root", "--data-dir", data)
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    monkeypatch.setenv("MEDATTN_PASSWORD", "short")
    code, _, err = run_cli("users", "create", "xy", "--data-dir", data)
    assert code == 2 and "at least 8" in err
    code, out, _ = run_cli("users", "list", "--data-dir", data)
    assert out.split() == ["root", "admin", out.split()[2]]
