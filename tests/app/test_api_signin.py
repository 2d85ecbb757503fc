"""docs/app.md's API sign-in (form login, CSRF token, ``POST /api/tokens``), run with curl as written."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from .conftest import make_user

DOC = Path(__file__).resolve().parents[2] / "docs" / "app.md"


def _signin_block() -> str:
    blocks = [b for b in re.findall(r"^```bash\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
              if "/api/tokens" in b and "csrf_token" in b]
    assert len(blocks) == 1, "docs/app.md: the API sign-in example is gone"
    return blocks[0]


@pytest.fixture
def server(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_documented_api_signin_gives_a_working_token(app, server, tmp_path):
    make_user(app, "admin", "pw with spaces & signs", admin=True)
    script = _signin_block().replace("URL=http://127.0.0.1:8000", f"URL={server}")
    env = {"PATH": "/usr/bin:/bin", "PW": "pw with spaces & signs"}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "303"  # signed in
    assert '"username":"admin"' in lines[-1]  # the token authenticates /api/me

    env["PW"] = "wrong password"
    (tmp_path / "jar").unlink()
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.splitlines()[:1] == ["200"]  # the form again: no session, no token
    assert run.returncode != 0
