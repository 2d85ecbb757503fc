"""The README's promises: its Python blocks run as written, its commands are the installed ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text(encoding="utf-8")) if lang == language]


README_PYTHON = _blocks(ROOT / "README.md", "python")


def test_readme_has_python_blocks():
    assert README_PYTHON, "the README's Python example is gone"


@pytest.mark.parametrize("index", range(len(README_PYTHON)))
def test_readme_python_block_runs_as_written(index, monkeypatch, capsys):
    """Each block runs from the repository root in a fresh namespace: no undefined names, no missing files."""
    monkeypatch.chdir(ROOT)
    exec(compile(README_PYTHON[index], f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out  # the example prints what it computed


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_shown_commands_are_the_installed_ones(path):
    """After scripts/setup.sh the command is .venv/bin/medattn: a bare `medattn VERB` in a shell block fails."""
    bare = re.compile(r"(?<![\w./-])(?<!-m )medattn (?=[a-z])")
    found = [line.strip() for lang, body in FENCE.findall(path.read_text(encoding="utf-8"))
             if lang in ("", "bash", "sh", "console") for line in body.splitlines()
             if bare.search(line.split("#")[0])]
    assert not found, f"{path.name}: use .venv/bin/medattn (README 'Quick start'): {found}"
