"""PraNet/SOD scores against pysodmetrics on real Kvasir masks (blurred, shifted, eroded)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import ndimage

from medattn.metrics import SOD_NAMES, SODMetrics, sod_scores

py_sod_metrics = pytest.importorskip("py_sod_metrics")


def _read_mask(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def kvasir_masks(request) -> list[np.ndarray]:
    root = request.getfixturevalue("shared_data")
    names = (root / "splits" / "kvasir-seg_pranet_test.txt").read_text().split()[:4]
    # every other pixel keeps the real shapes while keeping the test fast
    return [_read_mask(root / "kvasir-seg" / "masks" / n)[::2, ::2] > 127 for n in names]


def _variants(gt: np.ndarray) -> dict[str, np.ndarray]:
    g = gt * 255.0
    out = {
        "blurred": ndimage.gaussian_filter(g, 6),
        "shifted": np.roll(ndimage.gaussian_filter(g, 2), (9, -13), (0, 1)),
        "eroded": ndimage.binary_erosion(gt, iterations=6) * 255.0,
        "noisy": g * 0.7 + np.random.default_rng(0).uniform(0, 60, g.shape),
        "constant": np.full(g.shape, 90.0),
        "empty": np.zeros(g.shape),
    }
    return {k: np.clip(np.round(v), 0, 255).astype(np.uint8) for k, v in out.items()}


def _reference(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, float]:
    m = py_sod_metrics
    sm, em, wfm, mae = m.Smeasure(), m.Emeasure(), m.WeightedFmeasure(), m.MAE()
    fm = m.FmeasureV2(
        metric_handlers={
            "dice": m.DICEHandler(with_dynamic=True, with_adaptive=False),
            "iou": m.IOUHandler(with_dynamic=True, with_adaptive=False),
        }
    )
    for p, g in zip(preds, gts, strict=True):
        gu = g.astype(np.uint8) * 255  # same binarised GT for both (pysodmetrics uses > 128)
        for metric in (sm, em, wfm, mae, fm):
            metric.step(p, gu)
    e = em.get_results()["em"]
    f = fm.get_results()
    return {
        "Sm": sm.get_results()["sm"],
        "wFm": wfm.get_results()["wfm"],
        "MAE": mae.get_results()["mae"],
        "adpEm": e["adp"],
        "meanEm": e["curve"].mean(),
        "maxEm": e["curve"].max(),
        "meanDice": f["dice"]["dynamic"].mean(),
        "maxDice": f["dice"]["dynamic"].max(),
        "meanIoU": f["iou"]["dynamic"].mean(),
    }


@pytest.mark.data
def test_per_image_scores_equal_pysodmetrics(kvasir_masks):
    for gt in kvasir_masks:
        for kind, pred in _variants(gt).items():
            ours = sod_scores(pred, gt)
            ref = _reference([pred], [gt])
            for name in SOD_NAMES:
                assert ours[name] == pytest.approx(ref[name], abs=1e-6), (kind, name)


@pytest.mark.data
def test_dataset_aggregate_equals_pysodmetrics(kvasir_masks):
    preds, gts = [], []
    metric = SODMetrics()
    for i, gt in enumerate(kvasir_masks):
        pred = _variants(gt)["blurred" if i % 2 else "shifted"]
        preds.append(pred)
        gts.append(gt)
        metric.update(pred, gt, id=str(i))
    ours = metric.aggregate()
    ref = _reference(preds, gts)
    assert ours["count"] == len(gts)
    for name in SOD_NAMES:
        assert ours[name] == pytest.approx(ref[name], abs=1e-6), name
    # toolbox rule: the data set max is the max of the mean curve, not the mean of maxima
    per_image_max = np.mean([r["maxEm"] for r in metric.rows])
    assert ours["maxEm"] <= per_image_max + 1e-12


def test_curves_match_pysodmetrics_order_and_values():
    gt = np.zeros((40, 50), bool)
    gt[10:30, 12:35] = True
    pred = np.clip(ndimage.gaussian_filter(gt * 255.0, 4) + 10, 0, 255).astype(np.uint8)
    _, curves = sod_scores(pred, gt, return_curves=True)
    em = py_sod_metrics.Emeasure()
    em.step(pred, gt.astype(np.uint8) * 255)
    # pysodmetrics lists thresholds 255..0, ours 0..255
    np.testing.assert_allclose(curves["em"], em.get_results()["em"]["curve"][::-1], atol=1e-12)


def test_float_and_uint8_inputs_agree():
    gt = np.zeros((32, 32), bool)
    gt[8:20, 5:25] = True
    pred8 = np.clip(ndimage.gaussian_filter(gt * 255.0, 3), 0, 255).astype(np.uint8)
    a = sod_scores(pred8, gt)
    b = sod_scores(pred8 / 255.0, gt)
    for name in SOD_NAMES:
        assert a[name] == pytest.approx(b[name], abs=1e-12), name


def test_binary_prediction_is_a_hard_mask():
    gt = np.zeros((30, 30), bool)
    gt[5:20, 5:15] = True
    perfect = sod_scores(gt.astype(np.uint8) * 255, gt, binary=True)
    for name in ("meanDice", "maxDice", "meanIoU", "Sm", "wFm"):
        assert perfect[name] == pytest.approx(1.0, abs=1e-9), name
    for name in ("meanEm", "maxEm", "adpEm"):  # the toolbox divides the E-phi sum by N - 1
        assert perfect[name] == pytest.approx(gt.size / (gt.size - 1), abs=1e-9), name
    assert perfect["MAE"] == 0.0
    # the toolbox sweep lets threshold 0 switch every pixel on, so it stays below 1
    sweep = sod_scores(gt.astype(np.uint8) * 255, gt, binary=False)
    n, fg = gt.size, gt.sum()
    assert sweep["meanDice"] == pytest.approx((255 + 2 * fg / (fg + n)) / 256)
    # a JPEG-like noisy mask counts as the mask after binarisation (> 127)
    noisy = (gt * 250 + 3).astype(np.uint8)
    assert sod_scores(noisy, gt, binary=True)["meanDice"] == 1.0


def test_empty_ground_truth_follows_toolbox():
    gt = np.zeros((20, 20), bool)
    empty = sod_scores(np.zeros((20, 20), np.uint8), gt)
    assert empty["Sm"] == 1.0 and empty["MAE"] == 0.0 and empty["wFm"] == 0.0
    assert empty["meanDice"] < 1.0  # toolbox: 0/0 at a threshold counts 0


def test_rejects_bad_inputs():
    gt = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="shape"):
        sod_scores(np.zeros((4, 5), np.uint8), gt)
    with pytest.raises(ValueError, match="boolean"):
        sod_scores(np.zeros((4, 4), np.uint8), gt.astype(np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sod_scores(np.full((4, 4), 2.0), gt)


def test_metrics_package_does_not_import_torch():
    import subprocess

    code = "import medattn.metrics, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
