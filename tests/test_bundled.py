"""Trained models shipped in src/medattn/weights: cards, integrity, loading, and that they segment.

Each bundled ``<name>.safetensors`` is checked against its card (fields, SHA-256, size,
no option pointing at a file outside the package), loaded by name through
``medattn.inference.load_model`` and used by the CLI. The polyp model must segment the six
shipped Kvasir samples (PraNet *test* split images, unseen in training) with mean Dice > 0.5
at p > 0.5; the skin model must reproduce, on the real PH2 data, the held-out Dice its card
reports.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from medattn.models.hub import WEIGHTS_DIR, model_card

BUNDLED = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "kvasir"
CARD_FIELDS = ("model", "options", "task", "input_size", "data", "split", "epochs", "wall_clock_seconds",
               "hardware", "metrics", "command", "version", "sha256")
FILE_OPTIONS = ("encoder_pretrained", "swin_pretrained", "pretrained_encoder", "mae", "pretrained")


def _dice(pred: np.ndarray, gt: np.ndarray) -> float:
    inter = np.logical_and(pred, gt).sum()
    total = pred.sum() + gt.sum()
    return 1.0 if total == 0 else float(2 * inter / total)


def _bundles_of(task_hint: str) -> list[str]:
    return [n for n in BUNDLED if task_hint in n]


def test_weights_folder_is_documented():
    readme = (WEIGHTS_DIR / "README.md").read_text(encoding="utf-8")
    for name in BUNDLED:
        assert f"`{name}`" in readme, f"{name} is not described in src/medattn/weights/README.md"
    for path in WEIGHTS_DIR.glob("*.json"):
        assert path.with_suffix(".safetensors").is_file(), f"{path.name} has no weights"


@pytest.mark.parametrize("name", BUNDLED)
def test_card_and_integrity(name):
    path = WEIGHTS_DIR / f"{name}.safetensors"
    card = model_card(path)
    missing = [f for f in CARD_FIELDS if f not in card]
    assert not missing, f"{name}.json lacks {missing}"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"]
    assert path.stat().st_size < 30 * 2**20
    assert "2-core CPU, no GPU" in card["hardware"]
    assert card["command"] and "medattn train" in card["command"]
    assert card["epochs"] >= 1 and card["wall_clock_seconds"] > 0
    # test-set metrics, not validation scores
    assert card["metrics"]["test"] and "val_dice" not in json.dumps(card["metrics"])
    for key in FILE_OPTIONS:
        assert card["options"].get(key) is None, f"{name}: option {key} points at a file outside the package"


@pytest.mark.parametrize("name", BUNDLED)
def test_listed_as_bundled(name, run_cli):
    code, out, _ = run_cli("models", name, "--json")
    assert code == 0
    records = {r["name"]: r for r in json.loads(out)}
    assert records[name]["bundled"] is True
    assert records[name]["params"] > 0


@pytest.mark.parametrize("name", _bundles_of("polyp"))
def test_polyp_model_segments_the_samples(name):
    from medattn.inference import load_model, predict_batch
    from medattn.io import read_mask, read_rgb

    lm = load_model(name)
    images = sorted((SAMPLES / "images").iterdir())
    preds = predict_batch(lm, [read_rgb(p) for p in images])
    dices = [_dice(pr.prob > 0.5, read_mask(SAMPLES / "masks" / f"{p.stem}.png")) for p, pr in zip(images, preds, strict=True)]
    assert len(dices) == 6
    assert np.mean(dices) > 0.5, f"{name}: Dice on the six Kvasir samples {np.round(dices, 3)}"


@pytest.mark.parametrize("name", _bundles_of("polyp"))
def test_predict_cli_with_bundled_name(name, run_cli, tmp_path):
    code, _, err = run_cli("predict", "--model", name, SAMPLES / "images", "--out", tmp_path)
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(records) == 6 and all(r["model"] for r in records)
    assert len(list(tmp_path.glob("*_mask.png"))) == 6


@pytest.mark.parametrize("name", _bundles_of("skin"))
def test_skin_model_reproduces_its_card(name, shared_data):
    """Recompute the card's held-out-fold Dice on PH2 (images never seen in that model's training)."""
    from medattn.data import discover
    from medattn.inference import load_model, predict_batch
    from medattn.io import read_mask, read_rgb

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    held_out = set(card["split"]["held_out_ids"])
    samples = [s for s in discover(shared_data / "ph2").samples if s.id in held_out]
    assert len(samples) == len(held_out) == card["metrics"]["held_out_images"]
    lm = load_model(name)
    dices = [_dice(predict_batch(lm, [read_rgb(s.image)])[0].prob > 0.5, read_mask(s.mask)) for s in samples]
    assert np.mean(dices) == pytest.approx(card["metrics"]["test"]["dice"], abs=2e-3)
    assert np.mean(dices) > 0.6
