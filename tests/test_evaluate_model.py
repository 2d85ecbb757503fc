"""``medattn evaluate --model``: which images a split selects, temporary maps, the README's Kvasir-100 number."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from medattn.data import discover, save_split
from medattn.models import create
from medattn.models.hub import WEIGHTS_DIR, save_bundled

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "kvasir"
OPTS = {"in_channels": 3, "num_classes": 1, "channels": [8, 16, 32], "num_res_units": 1}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_bundled(create("unet", **OPTS), "tiny", OPTS,
                        {"model": "unet", "input_size": [48, 64], "task": "segmentation"}, folder=tmp_path)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Python's temporary folder for this test only, to see what is left in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _ids(stdout: str) -> list[str]:
    return [row["id"] for row in json.loads(stdout)["images"]]


def test_plain_list_split_selects_the_listed_images(run_cli, checkpoint, tmp_path, private_tmp):
    names = sorted(p.name for p in (SAMPLES / "images").iterdir())
    listing = tmp_path / "test.txt"
    listing.write_text(f"# two of six\n{names[3]}\n\n{Path(names[1]).stem}.png\n")  # a stem matches too
    code, out, err = run_cli("evaluate", "--model", checkpoint, "--data", SAMPLES, "--split", listing,
                             "--format", "json")
    assert code == 0, err
    assert _ids(out) == [Path(names[3]).stem, Path(names[1]).stem]
    assert f"predicting 2 images of {SAMPLES} chosen by {listing}" in err
    assert "" not in err.splitlines(), "no empty lines on stderr"
    assert list(private_tmp.iterdir()) == []  # the maps' temporary folder is gone

    listing.write_text("not-an-image.jpg\n")
    code, _, err = run_cli("evaluate", "--model", checkpoint, "--data", SAMPLES, "--split", listing)
    assert code == 2 and "test.txt: 'not-an-image.jpg' is not an image of" in err and err.count("\n") == 1


def test_pooled_json_split_is_restricted_to_the_data_given(run_cli, checkpoint, tmp_path, private_tmp):
    pool = tmp_path / "pool"
    for name in ("kvasir-a", "kvasir-b"):
        shutil.copytree(SAMPLES, pool / name)
    a, b = (discover(pool / n).samples for n in ("kvasir-a", "kvasir-b"))
    split = save_split(tmp_path / "split.json", {"train": a[:2], "test_a": a[2:5], "test_b": b[:2]})
    code, out, err = run_cli("evaluate", "--model", checkpoint, "--data", pool / "kvasir-a", "--split", split,
                             "--format", "json")
    assert code == 0, err
    assert _ids(out) == [s.id for s in a[2:5]]  # test_a only, not the training images, not test_b
    code, out, err = run_cli("evaluate", "--model", checkpoint, "--data", pool, "--split", split,
                             "--format", "json")
    assert code == 0, err
    assert json.loads(out)["count"] == 5  # the parent folder holds both test parts
    code, _, err = run_cli("evaluate", "--model", checkpoint, "--data", SAMPLES, "--split", split)
    assert code == 2 and "no test image lies in" in err and "kvasir-seg" in err


def test_no_temporary_maps_left_after_an_error_or_interrupt(run_cli, checkpoint, private_tmp, monkeypatch):
    import medattn.inference.files as files

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "predict_batch", broken)
    code, _, _ = run_cli("evaluate", "--model", checkpoint, "--data", SAMPLES)
    assert code == 130
    assert list(private_tmp.iterdir()) == []


def test_out_keeps_the_maps(run_cli, checkpoint, tmp_path, private_tmp):
    code, out, err = run_cli("evaluate", "--model", checkpoint, "--data", SAMPLES, "--out", tmp_path / "maps")
    assert code == 0, err
    assert len(list((tmp_path / "maps").glob("*.png"))) == 6 and "| tiny | 6 |" in out
    assert list(private_tmp.iterdir()) == []


def _readme_evaluate_example() -> list[str]:
    """The arguments of the README's ``medattn evaluate --model`` example."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [ln for ln in re.findall(r"^(?:\.venv/bin/)?medattn evaluate +--model .*$", text, re.M)]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("#")[0])[2:]


@pytest.mark.data
def test_readme_evaluate_example_reproduces_the_bundled_card(run_cli, shared_data, monkeypatch, private_tmp):
    """The README's command prints the card's Kvasir-100 meanDice, and the README's table says the same."""
    card = json.loads((WEIGHTS_DIR / "bsanet-polyp.json").read_text(encoding="utf-8"))
    expected = card["metrics"]["test"]["test_kvasir"]
    args = [a.replace("../shared/data", str(shared_data)) for a in _readme_evaluate_example()]
    monkeypatch.chdir(ROOT)
    code, out, err = run_cli("evaluate", *args, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["count"] == expected["count"] == 100
    assert result["meanDice"] == pytest.approx(expected["meanDice"], abs=5e-4)
    assert result["meanIoU"] == pytest.approx(expected["meanIoU"], abs=5e-4)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"meanDice {result['meanDice']:.3f} Kvasir-100" in readme


def test_progress_bars_on_a_terminal(run_cli, checkpoint, monkeypatch):
    """On a terminal (forced here) prediction and scoring each show a bar; in a pipe nothing (no empty lines)."""
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal
    code, _, err = run_cli("evaluate", "--model", checkpoint, "--data", SAMPLES)
    assert code == 0, err
    assert "predict" in err and "6/6" in err and "scoring tiny" in err
