"""``medattn users`` set-password / disable / enable / delete, and what ``medattn serve`` says at start-up."""

from __future__ import annotations

import io
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medattn.app.db import ApiToken, Case, User
from medattn.app.security import authenticate, create_token

from .conftest import login, make_user


@pytest.fixture
def users(app, settings, run_cli, monkeypatch):
    """``medattn users ...`` on the app's database; ``stdin=`` feeds --password-stdin."""
    opts = ["--data-dir", settings.data_dir, "--db", settings.database_url]

    def run(*args, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return run_cli("users", *args, *opts)

    return run


def _can_sign_in(app, name: str, password: str) -> bool:
    with app.state.medattn.db.session() as s:
        return authenticate(s, name, password) is not None


def test_set_password_recovers_a_lost_admin_password(app, users, monkeypatch):
    make_user(app, "root", "forgotten-password", admin=True)
    code, out, err = users("set-password", "root", "--password-stdin", stdin="a-new-password\n")
    assert code == 0, err
    assert out.strip() == "new password set for root"
    assert _can_sign_in(app, "root", "a-new-password") and not _can_sign_in(app, "root", "forgotten-password")
    monkeypatch.setenv("MEDATTN_PASSWORD", "from-the-environment")
    assert users("set-password", "root")[0] == 0
    assert _can_sign_in(app, "root", "from-the-environment")
    code, _, err = users("set-password", "nobody", "--password-stdin", stdin="whatever-long\n")
    assert code == 2 and "no user 'nobody'" in err and err.count("\n") == 1
    code, _, err = users("set-password", "root", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least 8" in err
    assert _can_sign_in(app, "root", "from-the-environment")  # unchanged by the refused one


def test_disable_and_enable(app, users):
    make_user(app, "root", admin=True)
    make_user(app, "bob")
    with app.state.medattn.db.session() as s:
        _, token = create_token(s, s.scalar(select(User).where(User.username == "bob")), "script")
    with TestClient(app) as browser:
        login(browser, "bob")
        assert browser.get("/api/me").status_code == 200
        code, out, err = users("disable", "bob")
        assert code == 0 and out.strip() == "disabled bob", err
        assert browser.get("/api/me").status_code == 401  # the open session ends
    assert not _can_sign_in(app, "bob", "correct horse")
    with TestClient(app) as anon:
        assert anon.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with app.state.medattn.db.session() as s:
        assert s.scalars(select(ApiToken)).all() == []  # revoked, not just refused
    code, out, _ = users("list")
    rows = [ln.split("\t") for ln in out.splitlines()]
    assert [r[0] for r in rows] == ["bob", "root"] and rows[0][3:] == ["disabled"] and rows[1][3:] == []
    code, out, _ = users("set-password", "bob", "--password-stdin", stdin="another-password\n")
    assert code == 0 and "disabled" in out and not _can_sign_in(app, "bob", "another-password")
    assert users("enable", "bob")[0] == 0
    assert _can_sign_in(app, "bob", "another-password")
    code, _, err = users("disable", "root")
    assert code == 2 and "only enabled administrator" in err


def test_delete(app, users):
    make_user(app, "root", admin=True)
    make_user(app, "carol")
    make_user(app, "dave")
    with app.state.medattn.db.session() as s:
        carol = s.scalar(select(User).where(User.username == "carol"))
        s.add(Case(owner_id=carol.id, pipeline="segment", title="kept"))
    code, _, err = users("delete", "carol")
    assert code == 2 and "owns 1 cases" in err and "--cases-to" in err
    code, out, err = users("delete", "carol", "--cases-to", "root")
    assert code == 0 and out.strip() == "deleted carol; 1 cases now belong to root", err
    with app.state.medattn.db.session() as s:
        assert [c.owner.username for c in s.scalars(select(Case))] == ["root"]
        assert sorted(s.scalars(select(User.username))) == ["dave", "root"]
    assert users("delete", "dave")[0] == 0
    code, _, err = users("delete", "root")
    assert code == 2 and "only enabled administrator" in err
    code, _, err = users("delete", "ghost")
    assert code == 2 and "no user 'ghost'" in err


def test_serve_says_where_the_accounts_live(tmp_path, run_cli, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setenv("MEDATTN_PASSWORD", "first-password")
    data = tmp_path / "d"
    code, out, err = run_cli("serve", "--data-dir", data)
    assert code == 0, err
    assert f"data in {data}" in out and f"sqlite:///{data}/medattn.db" in out
    assert f"no account yet: `medattn users create --admin NAME --data-dir {data}`" in out
    code, out, err = run_cli("serve", "--data-dir", data, "--create-admin", "admin")
    assert code == 0 and "created administrator 'admin'" in out, err
    code, out, err = run_cli("serve", "--data-dir", data, "--create-admin", "admin")  # a second start
    assert code == 0, err
    assert "created" not in out
    assert f"1 account, administrators: admin; lost password: `medattn users set-password NAME --data-dir {data}`" \
        in out
