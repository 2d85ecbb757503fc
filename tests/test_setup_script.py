"""scripts/setup.sh with a stand-in pip: location warnings filtered on every call, failures not hidden."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"

FAKE_PIP = """#!/usr/bin/env bash
echo "pip $*" >> "$(dirname "$0")/../../pip.log"
echo "WARNING: Location 'file:///nowhere' is ignored: it is neither a file nor a directory." >&2
echo "pip says: installing $*"
exit "${FAKE_PIP_STATUS:-0}"
"""
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$2" = "import torch" ]; then exit "${FAKE_TORCH_STATUS:-1}"; fi
echo "medattn ready"
"""


@pytest.fixture
def checkout(tmp_path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SETUP, tmp_path / "scripts" / "setup.sh")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("pip", FAKE_PIP), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return tmp_path


def _run(checkout: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(checkout / "scripts" / "setup.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=60)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_pip_call_is_filtered_and_torch_pinned(checkout):
    run = _run(checkout, MEDATTN_TORCH_SPEC="torch --index-url https://example.invalid/cu124")
    assert run.returncode == 0, run.stderr
    assert "WARNING: Location" not in run.stdout + run.stderr
    assert run.stdout.count("pip says: installing") == 2 and "medattn ready" in run.stdout
    calls = (checkout / "pip.log").read_text().splitlines()
    assert calls == ["pip install -q torch --index-url https://example.invalid/cu124", "pip install -q -e .[dev]"]

    (checkout / "pip.log").unlink()
    run = _run(checkout)  # no torch yet: the exact CPU pin
    assert run.returncode == 0 and "WARNING: Location" not in run.stdout + run.stderr
    assert (checkout / "pip.log").read_text().splitlines() == ["pip install -q torch==2.13.0",
                                                                 "pip install -q -e .[dev]"]
    (checkout / "pip.log").unlink()
    assert _run(checkout, FAKE_TORCH_STATUS="0").returncode == 0  # torch present: left alone
    assert (checkout / "pip.log").read_text().splitlines() == ["pip install -q -e .[dev]"]


def test_a_failing_pip_stops_the_set_up(checkout):
    run = _run(checkout, FAKE_PIP_STATUS="1")
    assert run.returncode != 0
    assert "medattn ready" not in run.stdout
    assert len((checkout / "pip.log").read_text().splitlines()) == 1  # stopped at the first failure
    run = _run(checkout, FAKE_PIP_STATUS="1", FAKE_TORCH_STATUS="0")  # the filtered `pip install -e` call fails
    assert run.returncode != 0 and "medattn ready" not in run.stdout
