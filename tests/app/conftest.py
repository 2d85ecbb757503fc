"""Fixtures for the application tests: an app on a temporary data dir, users, clients."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from medattn.app.settings import AppSettings
from medattn.app.web import create_app


def _fresh_db_url() -> str | None:
    """MEDATTN_TEST_DB_URL runs the app tests on another database (e.g. PostgreSQL), emptied per test."""
    url = os.environ.get("MEDATTN_TEST_DB_URL")
    if not url:
        return None
    from sqlalchemy import text

    from medattn.app.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def settings(tmp_path) -> AppSettings:
    return AppSettings(data_dir=tmp_path / "data", db_url=_fresh_db_url(), max_upload_mb=5, max_pixels=4_000_000,
                       queue_size=8)


@pytest.fixture
def app(settings):
    return create_app(settings, start_worker=False)


def make_user(app, name: str, password: str = "correct horse", admin: bool = False) -> None:
    from medattn.app.security import create_user

    with app.state.medattn.db.session() as s:
        create_user(s, name, password, admin=admin)


def login(client: TestClient, name: str, password: str = "correct horse") -> str:
    """Sign in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    home = client.get("/")
    return re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)


@contextmanager
def signed_in(app, name: str = "alice") -> Iterator[TestClient]:
    """A client of ``app`` signed in as a new user ``name``, with its CSRF token as ``client.csrf``."""
    make_user(app, name)
    with TestClient(app) as c:
        c.csrf = login(c, name)
        yield c


@pytest.fixture
def alice(app):
    with signed_in(app) as c:
        yield c


@contextmanager
def served(env: dict[str, str], stdout: int | None = subprocess.DEVNULL) -> Iterator[str]:
    """``medattn serve`` in a subprocess (environment ``env``) on a free port; yields its base URL once
    /api/health answers, and stops the server afterwards."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "medattn", "serve", "--port", str(port)], env=env,
                            stdout=stdout, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.25)
        else:
            raise AssertionError("server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def bob(app):
    make_user(app, "bob")
    with TestClient(app) as c:
        c.csrf = login(c, "bob")
        yield c


TINY_OPTS = {"in_channels": 3, "num_classes": 1, "channels": [8, 16, 32], "num_res_units": 1}


def install_tiny_model(settings, name: str = "tiny-polyp", modality: list[str] | None = ("endoscopy",),
                       inference: dict | None = None) -> str:
    """An (untrained) small U-Net checkpoint in the app's models folder: exercises the pipeline, not accuracy.
    Its card declares ``modality`` (None: no modality field, as a card written before they existed) and
    ``inference`` when given (how the model is meant to be run)."""
    import torch

    from medattn.models import create
    from medattn.models.hub import save_bundled

    torch.manual_seed(0)
    save_bundled(create("unet", **TINY_OPTS), name, TINY_OPTS,
                 {"model": "unet", "input_size": [64, 64], "task": "segmentation", "version": "test",
                  **({"modality": list(modality)} if modality else {}),
                  **({"inference": inference} if inference is not None else {})},
                 folder=settings.models_dir)
    return name


@pytest.fixture
def live_app(settings):
    """An app with a segmentation model and a running worker."""
    settings.ensure_dirs()
    install_tiny_model(settings)
    return create_app(settings, start_worker=True)


def wait_done(client, case_id: str, timeout: float = 60.0) -> dict:
    import time

    t0 = time.time()
    while time.time() - t0 < timeout:
        c = client.get(f"/api/cases/{case_id}").json()
        if c["status"] in ("done", "failed"):
            return c
        time.sleep(0.1)
    raise AssertionError(f"case {case_id} did not finish in {timeout}s")
