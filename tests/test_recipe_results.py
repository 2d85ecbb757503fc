"""benchmarks/recipe_results.py: the recipe ablation table from evaluation files (no training)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("recipe_results", REPO / "benchmarks" / "recipe_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval(path: Path, per_image: np.ndarray) -> None:
    """An evaluation file as `medattn evaluate --format json` writes it (the fields the table reads)."""
    images = [{"id": f"img{i:03d}", "meanDice": float(v), "dice": float(v)} for i, v in enumerate(per_image)]
    doc = {"name": path.stem, "count": len(images), "meanDice": float(per_image.mean()), "meanIoU": 0.5,
           "Sm": 0.7, "wFm": 0.6, "meanEm": 0.8, "MAE": 0.05, "dice": float(per_image.mean()), "images": images}
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_table_states_each_elements_effect_with_a_paired_interval(recipe, tmp_path) -> None:
    rng = np.random.default_rng(0)
    full = rng.uniform(0.4, 0.9, 200)
    for direction in ("k2c", "c2k"):
        _eval(tmp_path / f"recipe-{direction}-full-eval.json", full)
        _eval(tmp_path / f"recipe-{direction}-base-eval.json", full - 0.10 + rng.normal(0, 0.01, 200))
        _eval(tmp_path / f"recipe-{direction}-no-ema-eval.json", full + np.where(np.arange(200) % 2, 0.05, -0.05))
    out = tmp_path / "out"
    assert recipe.main(["--runs", str(tmp_path), "--out", str(out), "--tag", "t"]) == 0
    doc = json.loads((out / "t.json").read_text(encoding="utf-8"))
    base = doc["arms"]["base"]["k2c"]["minus_full"]
    base_per_image = json.loads((tmp_path / "recipe-k2c-base-eval.json").read_text())["images"]
    assert base["mean"] == pytest.approx(np.mean([r["meanDice"] for r in base_per_image]) - full.mean())
    assert base["low"] < base["mean"] < base["high"] and base["images"] == 200
    assert "full" in doc["arms"] and "minus_full" not in doc["arms"]["full"]["k2c"]
    found = doc["findings"]
    assert any(f.startswith("the full recipe, Kvasir-SEG -> CVC-ClinicDB: helps (meanDice +0.1") for f in found)
    # noise around zero: the interval straddles it and the table says so
    assert any(f.startswith("EMA of the weights, CVC-ClinicDB -> Kvasir-SEG: no clear effect") for f in found)
    md = (out / "t.md").read_text(encoding="utf-8")
    assert "## Trained on Kvasir-SEG only, judged on all of CVC-ClinicDB (200 images)" in md
    assert md.count("| no-ema |") == 2


def test_bootstrap_interval_covers_a_known_shift(recipe) -> None:
    a = {str(i): 0.5 + 0.02 * (i % 5) for i in range(100)}
    b = {k: v - 0.03 for k, v in a.items()}
    d = recipe.paired_bootstrap(a, b)
    assert d["mean"] == pytest.approx(0.03) and d["low"] == pytest.approx(0.03) and d["high"] == pytest.approx(0.03)
    with pytest.raises(ValueError, match="no image in common"):
        recipe.paired_bootstrap({"x": 1.0}, {"y": 1.0})


def test_no_evaluations_is_a_clear_error(recipe, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        recipe.main(["--runs", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "no recipe evaluation found under" in capsys.readouterr().err
