"""The skin-lesion benchmark scripts: residual AUROC scoring and the fold/part bookkeeping of the tables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_residual_auroc_equals_scikit_learn_and_splits_large_lesions():
    sk = pytest.importorskip("sklearn.metrics")
    bench = _load("grcsf_residual_auroc")
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 16, 16), bool)
    masks[0, 4:8, 4:8] = True          # 6 % lesion
    masks[1, :12, :] = True            # 75 % lesion: "large"
    maps = rng.random((3, 16, 16)) + 0.5 * masks
    maps[2] = rng.random((16, 16))     # no lesion: skipped
    for r, m in zip(maps[:2], masks[:2], strict=True):
        assert bench.auroc(np.round(r.ravel(), 1), m.ravel()) == pytest.approx(
            sk.roc_auc_score(m.ravel(), np.round(r.ravel(), 1)))  # ties averaged like scikit-learn
    s = bench.score(maps, masks, large=0.5)
    assert s["images"] == 2
    assert s["small_lesions"]["images"] == 1 and s["large_lesions"]["images"] == 1
    assert s["large_lesions"]["mean_auroc"] == pytest.approx(bench.auroc(maps[1].ravel(), masks[1].ravel()))


def test_darkness_baseline_ranks_dark_pixels_first():
    torch = pytest.importorskip("torch")
    bench = _load("grcsf_residual_auroc")
    img = torch.full((1, 3, 8, 8), 0.8)
    img[..., 2:4, 2:4] = 0.2
    dark = bench.baseline_maps(img)["darkness (1 - luminance)"]
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:4, 2:4] = True
    assert bench.score(dark, mask, 0.5)["mean_auroc"] == 1.0


def test_fold_of_kfold_file_and_seed(tmp_path):
    results = _load("ph2_results")

    def run(split: dict, seed: int = 0) -> Path:
        import yaml

        folder = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"split": split}, "train": {"seed": seed}}))
        return folder

    assert results.fold_of(run({"kind": "kfold", "k": 5, "fold": 3})) == 3
    fold_file = tmp_path / "f.json"
    fold_file.write_text(json.dumps({"meta": {"kfold": 5, "fold": 2}}))
    assert results.fold_of(run({"kind": "file", "file": str(fold_file)})) == 2
    assert results.fold_of(run({"kind": "file", "file": str(ROOT / "configs/splits/isic2017_seg.json")}, 7)) == 7


def test_markdown_lists_parameters_beside_the_paper():
    results = _load("ph2_results")
    folds = [{"fold": f, "mean": {k: 0.8 + 0.01 * f for k in results.COLUMNS}, "train_seconds": 60.0,
              "epochs": 10, "input_size": [96, 128], "params": 5_944_373, "paper_params": 5_900_000,
              "in_channels": 4} for f in (0, 1)]
    arm = results.summarize(folds)
    assert arm["dice"]["std"] == pytest.approx(np.std([0.8, 0.81], ddof=1))
    md = results.markdown({"Unet-28": arm}, [], "best", part="test")
    assert "5.94 M (5.90 M)" in md and "96x128, 4 ch" in md and "'test' part" in md


def test_unfinished_runs_are_left_out_of_the_table(tmp_path):
    """A run still training (last.json below the config's epochs) must not be scored at an early epoch."""
    results = _load("ph2_results")

    def run(name: str, wanted: int, reached: int):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(f"train:\n  epochs: {wanted}\n")
        (folder / "last.json").write_text(json.dumps({"epoch": reached}))
        return folder

    assert results.finished(run("done", 3, 3))
    assert not results.finished(run("training", 3, 1))
    assert results.finished(tmp_path)  # no config / last.json: not a training folder, scored as it is


def test_prior_results_keep_runs_that_are_no_longer_on_disk(tmp_path):
    """--prior: a seed scored on another machine stays in the table; a run on disk is scored afresh,
    another arm's or another budget's runs are not taken, a file of another kind is refused by name."""
    results = _load("ph2_results")

    def rec(run: str, fold: int, dice: float) -> dict:
        return {"run": run, "fold": fold, "mean": {k: dice for k in results.COLUMNS}}

    prior = tmp_path / "table.json"
    prior.write_text(json.dumps({"folds": {
        "Unet-28": [rec("runs/e10-isic-unet28-s0", 0, 0.85), rec("runs/e10-isic-unet28-s1", 1, 0.10),
                    rec("runs/p256-isic-unet28-s0", 0, 0.83)],
        "HLF-Net": [rec("runs/e10-isic-hlfnet-s0", 0, 0.84)]}}))
    kept = results.prior_records([prior], "Unet-28", "runs/e10-isic-unet28-s*", [Path("runs/e10-isic-unet28-s1")])
    assert [r["run"] for r in kept] == ["runs/e10-isic-unet28-s0"]
    assert kept[0]["mean"]["dice"] == 0.85 and kept[0]["scored_in"] == str(prior)
    assert results.prior_records([prior], "Res-Unet-28", "runs/e10-isic-res_unet28-s*", []) == []
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(SystemExit, match=r"other\.json"):
        results.prior_records([bad], "Unet-28", "runs/*", [])


def test_polyp_results_prior_keeps_other_arms_scored_elsewhere(tmp_path):
    """polyp_results --prior: an arm scored on another machine stays in the table unless it is evaluated
    now or its run folder is on this disk; a later file's row replaces an earlier one's."""
    results = _load("polyp_results")
    here = tmp_path / "runs" / "skin-recipe-full"
    here.mkdir(parents=True)

    def table(path: Path, rows: list[tuple[str, str, float]]) -> Path:
        path.write_text(json.dumps({"results": [
            {"label": label, "run": run, "parts": {"test_ph2": {"count": 100, "meanDice": dice}}}
            for label, run, dice in rows]}))
        return path

    old = table(tmp_path / "old.json", [("mnv2", "runs/gone-mnv2", 0.90), ("base", "runs/gone-base", 0.89),
                                        ("full", str(here), 0.88)])
    new = table(tmp_path / "new.json", [("mnv2", "runs/gone-mnv2", 0.915)])
    kept = results.prior_rows([old, new], {"base"})
    assert [(r["label"], r["parts"]["test_ph2"]["meanDice"], r["scored_in"]) for r in kept] == [
        ("mnv2", 0.915, str(new))]
    old.write_text("{}")
    with pytest.raises(SystemExit, match=r"old\.json"):
        results.prior_rows([old], set())
