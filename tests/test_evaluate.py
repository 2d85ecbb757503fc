"""The evaluator and ``medattn evaluate``: pairing, resizing, formats, errors, acceptance on Kvasir."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medattn.errors import MedattnError
from medattn.evaluation import METRIC_NAMES, evaluate_folders, evaluate_pairs, is_binary_map, pair_by_stem
from medattn.metrics import SOD_NAMES, sod_scores

JSON_KEYS = ["meanDice", "meanIoU", "Sm", "wFm", "meanEm", "maxEm", "adpEm", "maxDice", "MAE",
             "dice", "iou", "precision", "recall"]  # fmt: skip


def _kvasir_subset(shared_data: Path, n: int) -> list[Path]:
    names = (shared_data / "splits" / "kvasir-seg_pranet_test.txt").read_text().split()[:n]
    return [shared_data / "kvasir-seg" / "masks" / name for name in names]


@pytest.fixture
def kvasir_gt(tmp_path, shared_data) -> Path:
    """Ten real Kvasir masks, linked into a folder."""
    folder = tmp_path / "gt"
    folder.mkdir()
    for path in _kvasir_subset(shared_data, 10):
        os.symlink(path, folder / path.name)
    return folder


def _blurred_preds(gt_dir: Path, out: Path, scale: float = 1.0) -> None:
    out.mkdir()
    for path in sorted(gt_dir.iterdir()):
        gt = np.asarray(Image.open(path).convert("L")) > 127
        prob = np.clip(ndimage.gaussian_filter(gt * 255.0, 5), 0, 255).astype(np.uint8)
        img = Image.fromarray(prob)
        if scale != 1.0:
            img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BILINEAR)
        img.save(out / (path.stem + ".png"))


@pytest.mark.data
def test_acceptance_masks_against_themselves(run_cli, kvasir_gt, tmp_path):
    out = tmp_path / "self.json"
    code, stdout, stderr = run_cli(
        "evaluate", "--pred", kvasir_gt, "--gt", kvasir_gt, "--format", "json", "--out", out, "--workers", "2"
    )
    assert code == 0, stderr
    doc = json.loads(out.read_text())
    assert list(doc)[:2] == ["name", "count"] and doc["count"] == 10
    assert [k for k in doc if k in JSON_KEYS] == JSON_KEYS
    assert doc["meanDice"] == 1.0 and doc["MAE"] == 0.0
    assert len(doc["images"]) == 10 and doc["images"][0]["dice"] == 1.0
    assert "meanDice" in stdout  # the mean row is shown


@pytest.mark.data
def test_probability_maps_equal_in_process_scores_and_parallel(kvasir_gt, tmp_path):
    pred_dir = tmp_path / "pred"
    _blurred_preds(kvasir_gt, pred_dir)
    serial = evaluate_folders(pred_dir, kvasir_gt, workers=1)
    parallel = evaluate_folders(pred_dir, kvasir_gt, workers=2)
    assert serial.binary_count == 0
    for key in METRIC_NAMES:
        assert parallel.mean[key] == serial.mean[key], key
    # the per-image rows are the library's scores of the same arrays
    row = serial.images[3]
    gt = np.asarray(Image.open(kvasir_gt / f"{row['id']}.jpg").convert("L")) > 127
    pred = np.asarray(Image.open(pred_dir / f"{row['id']}.png"))
    ref = sod_scores(pred, gt)
    for key in SOD_NAMES:
        assert row[key] == pytest.approx(ref[key], abs=1e-12)
    assert [r["id"] for r in parallel.images] == sorted(r["id"] for r in parallel.images)


@pytest.mark.data
def test_smaller_predictions_are_resized_bilinearly(kvasir_gt, tmp_path):
    pred_dir = tmp_path / "small"
    _blurred_preds(kvasir_gt, pred_dir, scale=0.5)
    result = evaluate_folders(pred_dir, kvasir_gt, workers=1)
    first = result.images[0]
    gt = np.asarray(Image.open(kvasir_gt / f"{first['id']}.jpg").convert("L")) > 127
    small = Image.open(pred_dir / f"{first['id']}.png")
    big = np.asarray(small.resize((gt.shape[1], gt.shape[0]), Image.Resampling.BILINEAR))
    assert first["Sm"] == pytest.approx(sod_scores(big, gt)["Sm"], abs=1e-12)
    assert result.mean["meanDice"] > 0.8


def _write(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def test_pairing_warnings_and_formats(run_cli, tmp_path):
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir()
    gt.mkdir()
    mask = np.zeros((24, 24), np.uint8)
    mask[5:15, 6:18] = 255
    for stem in ("a", "b"):
        _write(gt / f"{stem}.png", mask)
        _write(pred / f"{stem}.jpg", np.roll(mask, 2, 0))
    _write(gt / "only_gt.png", mask)
    _write(pred / "only_pred.png", mask)
    (pred / "notes.txt").write_text("not an image")
    pairs, lonely_pred, lonely_gt = pair_by_stem(pred, gt)
    assert [p[0] for p in pairs] == ["a", "b"]
    assert lonely_pred == ["only_pred"] and lonely_gt == ["only_gt"]

    code, stdout, stderr = run_cli("evaluate", "--pred", pred, "--gt", gt, "--format", "csv", "--name", "toy")
    assert code == 0
    assert "1 predictions without ground truth: only_pred" in stderr
    assert "1 ground-truth files without prediction: only_gt" in stderr
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [r["id"] for r in rows] == ["a", "b", "mean"]
    assert float(rows[-1]["dice"]) == pytest.approx(2 * 96 / 240)  # 10x12 box shifted by 2 rows

    code, stdout, _ = run_cli("evaluate", "--pred", pred, "--gt", gt, "--name", "toy")
    assert code == 0 and stdout.startswith("| name | count | meanDice")
    assert "| toy | 2 |" in stdout


def test_errors(run_cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write(a / "x.png", np.zeros((8, 8), np.uint8))
    _write(b / "y.png", np.zeros((8, 8), np.uint8))
    code, _, stderr = run_cli("evaluate", "--pred", a, "--gt", b)
    assert code == 2 and stderr.startswith("error: no prediction in") and stderr.count("\n") == 1
    code, _, stderr = run_cli("evaluate", "--pred", tmp_path / "missing", "--gt", b)
    assert code == 2 and "missing: prediction folder does not exist" in stderr
    code, _, stderr = run_cli("evaluate", "--pred", a, "--gt", b, "--model", a / "x.png", "--data", b)
    assert code == 2 and "not both" in stderr
    code, _, stderr = run_cli("evaluate", "--pred", a, "--gt", b, "--format", "xml")
    assert code == 2 and "--format" in stderr
    (a / "y.png").write_bytes(b"")  # an empty file is reported with its name
    code, _, stderr = run_cli("evaluate", "--pred", a, "--gt", b)
    assert code == 2 and "y.png" in stderr
    with pytest.raises(MedattnError, match="nothing to evaluate"):
        evaluate_pairs([])


def test_model_hook_without_inference(run_cli, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "medattn.inference", None)  # as if not built
    code, _, stderr = run_cli("evaluate", "--model", tmp_path / "m.pt", "--data", tmp_path)
    assert code == 2 and "model evaluation is not available" in stderr


def test_model_hook_calls_score_model(run_cli, tmp_path, monkeypatch):
    import sys
    import types

    gt = np.zeros((16, 16), np.uint8)
    gt[4:12, 4:12] = 255
    _write(tmp_path / "gt.png", gt)
    _write(tmp_path / "pred.png", gt)
    calls = {}

    def score_model(model, data, split, **kwargs):
        calls.update(model=model, data=data, split=split, **kwargs)
        return evaluate_pairs([("case", tmp_path / "pred.png", tmp_path / "gt.png")], name=kwargs["name"])

    monkeypatch.setitem(sys.modules, "medattn.inference", types.SimpleNamespace(score_model=score_model))
    code, stdout, stderr = run_cli("evaluate", "--model", "bsanet-polyp", "--data", tmp_path, "--tta",
                                   "--format", "json")  # fmt: skip
    assert code == 0, stderr
    assert calls["tta"] is True and calls["split"] is None and calls["model"] == "bsanet-polyp"
    assert calls["threshold"] is None  # the model card's
    assert json.loads(stdout)["dice"] == 1.0


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_file_is_named_and_the_rest_scored(run_cli, tmp_path, workers):
    """One bad prediction does not stop the evaluation: it is reported by name, skipped, exit status 1."""
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir()
    gt.mkdir()
    mask = np.zeros((24, 24), np.uint8)
    mask[5:15, 6:18] = 255
    for i in range(10):  # >= SERIAL_BELOW: workers=2 scores in a process pool
        _write(gt / f"im{i}.png", mask)
        _write(pred / f"im{i}.png", mask)
    (pred / "im3.png").write_bytes(b"not a png")
    (gt / "im7.png").write_bytes(b"")
    code, stdout, stderr = run_cli("evaluate", "--pred", pred, "--gt", gt, "--format", "json",
                                   "--workers", workers)
    assert code == 1, stderr
    result = json.loads(stdout)
    assert result["count"] == 8 and result["dice"] == 1.0
    assert "im3" not in {r["id"] for r in result["images"]}
    warnings = [ln for ln in stderr.splitlines() if ln.startswith("warning: skipped")]
    assert len(warnings) == 2 and "im3.png" in warnings[0] + warnings[1] and "im7.png" in warnings[0] + warnings[1]
    assert "error: 2 of 10 pairs could not be read" in stderr
    assert "" not in stderr.splitlines()
    # the library is strict unless asked to skip: a benchmark must not lose images silently
    with pytest.raises(MedattnError, match=r"im[37]\.png.*and 1 more pairs"):
        evaluate_folders(pred, gt, workers=workers)
    assert len(evaluate_folders(pred, gt, workers=workers, skip_unreadable=True).skipped) == 2


def test_no_empty_lines_on_stderr(run_cli, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    mask = np.zeros((16, 16), np.uint8)
    mask[2:9, 3:12] = 255
    for i in range(3):
        _write(folder / f"{i}.png", mask)
    code, _, stderr = run_cli("evaluate", "--pred", folder, "--gt", folder)
    assert code == 0
    assert stderr.splitlines() and "" not in stderr.splitlines(), repr(stderr)


def test_overlap_scores_use_the_threshold():
    """Dice / IoU / precision / recall score p > threshold of a probability map; the toolbox scores do not move."""
    from medattn.evaluation.evaluator import score_arrays

    gt = np.zeros((10, 10), bool)
    gt[:, :5] = True
    pred = np.tile(np.linspace(255, 0, 10).round().astype(np.uint8), (10, 1))  # 255 ... 0 left to right
    at_half, _, _ = score_arrays(pred, gt, "prob")
    lower, _, _ = score_arrays(pred, gt, "prob", threshold=0.3)
    assert at_half["dice"] == pytest.approx(1.0)  # columns 0-4 (values >= 142) are the mask
    assert lower["recall"] == pytest.approx(1.0) and lower["precision"] == pytest.approx(5 / 7)  # columns 0-6
    assert lower["Sm"] == at_half["Sm"] and lower["MAE"] == at_half["MAE"]
    binary = np.where(gt, np.uint8(255), np.uint8(0))
    assert score_arrays(binary, gt, "auto", threshold=0.9)[0]["dice"] == pytest.approx(1.0)  # a mask stays a mask


def test_model_threshold_needs_a_model(run_cli, tmp_path):
    code, _, stderr = run_cli("evaluate", "--pred", tmp_path, "--gt", tmp_path, "--threshold", "0.3")
    assert code == 2 and "--threshold and --zoom need --model/--data" in stderr
    code, _, stderr = run_cli("evaluate", "--model", "bsanet-polyp", "--data", tmp_path, "--threshold", "1.5")
    assert code == 2 and "--threshold must be in [0, 1], got 1.5" in stderr


def test_binary_detection():
    jpeg_like = np.array([[0, 3, 8, 247, 255]], np.uint8)
    assert is_binary_map(jpeg_like)
    assert not is_binary_map(np.array([[0, 128, 255]], np.uint8))
