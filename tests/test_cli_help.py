"""Help texts agree with the README: no value placeholder on flags, model names as documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from medattn.cli.main import app

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[list[str]]:
    """Every command path, e.g. ["evaluate"], ["users", "set-password"]."""
    out: list[list[str]] = []

    def walk(cmd, path: list[str]) -> None:  # typer's vendored click: no isinstance(click.Group)
        out.append(path)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


def _help(run_cli, *path: str) -> str:
    code, out, err = run_cli(*path, "--help")
    assert code == 0, err
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())  # one line: wrapping and boxes do not matter


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "medattn")
def test_flags_show_no_value_placeholder(run_cli, path):
    assert "<bool>" not in _help(run_cli, *path)


def test_model_options_name_what_the_readme_uses(run_cli):
    evaluate = _help(run_cli, "evaluate")
    assert "--model NAME|PATH" in evaluate and "bundled name (bsanet-polyp" in evaluate
    assert "kvasir-seg_pranet_test.txt" in evaluate  # plain lists are accepted
    assert "cadn-ldct" in _help(run_cli, "denoise")
    enhance = _help(run_cli, "enhance")
    assert "eq. 7 of paper 002" in enhance and "fusion of the CAWE map with the colorized image" in enhance
    assert "$MEDATTN_DATA_DIR, else the user data folder, ~/.local/share/medattn on Linux" in _help(run_cli, "serve")


def test_readme_command_table_lists_every_verb():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = [ln for ln in readme.splitlines() if ln.startswith("| `medattn ")]
    for path in _commands():
        if len(path) == 1:
            assert any(f"`medattn {path[0]}" in row for row in table), \
                f"README's command table lacks `medattn {path[0]}`"
    users = next(row for row in table if row.startswith("| `medattn users"))
    for sub in ("create", "list", "set-password", "disable", "enable", "delete"):
        assert f"`{sub}`" in users or f"users {sub}" in users
