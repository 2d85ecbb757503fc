"""The command line's own contract: help, version, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medattn.cli.main import main
from medattn.errors import MedattnIOError


def test_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0
    assert out.strip().startswith("medattn ")


def test_help_lists_verbs(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "Usage" in out


def test_unknown_verb_is_an_error(run_cli):
    code, _, err = run_cli("no-such-verb")
    assert code != 0
    assert "no-such-verb" in err


def test_medattn_error_is_one_line(monkeypatch, capsys):
    import medattn.cli.main as cli

    def boom(*a, **k):
        raise MedattnIOError("/x/y.png", "file is empty")

    monkeypatch.setattr(cli, "app", boom)
    code = main(["anything"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "error: /x/y.png: file is empty"


@pytest.mark.slow
def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "medattn", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "medattn" in proc.stdout
