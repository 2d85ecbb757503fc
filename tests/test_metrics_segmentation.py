"""Overlap and surface-distance metrics against MONAI on real Kvasir masks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from medattn.metrics import SegmentationMetrics, assd, hd95, segmentation_scores

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")


@pytest.fixture(scope="module")
def kvasir_pairs(request) -> list[tuple[np.ndarray, np.ndarray]]:
    from PIL import Image

    root = request.getfixturevalue("shared_data")
    names = (root / "splits" / "kvasir-seg_pranet_test.txt").read_text().split()[4:7]
    pairs = []
    for n in names:
        gt = np.asarray(Image.open(root / "kvasir-seg" / "masks" / n).convert("L"))[::2, ::2] > 127
        pairs.append((gt, ndimage.binary_erosion(gt, iterations=5)))
        pairs.append((gt, np.roll(gt, (7, -4), (0, 1))))
        pairs.append((gt, ndimage.gaussian_filter(gt * 1.0, 5) > 0.3))
    return pairs


def _monai(pred: np.ndarray, gt: np.ndarray, spacing=None) -> dict[str, float]:
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    g = torch.from_numpy(gt[None, None].astype(np.float32))
    dice = monai_metrics.DiceMetric(include_background=True, ignore_empty=False)
    dice(p, g)
    miou = monai_metrics.MeanIoU(include_background=True, ignore_empty=False)
    miou(p, g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = monai_metrics.compute_hausdorff_distance(p, g, percentile=95, spacing=spacing)
        asd = monai_metrics.compute_average_surface_distance(p, g, symmetric=True, spacing=spacing)
    return {
        "dice": float(dice.aggregate()),
        "iou": float(miou.aggregate()),
        "hd95": float(hd),
        "assd": float(asd),
    }


@pytest.mark.data
def test_equal_to_monai_on_real_masks(kvasir_pairs):
    for gt, pred in kvasir_pairs:
        ref = _monai(pred, gt)
        ours = segmentation_scores(pred, gt)
        assert ours["dice"] == pytest.approx(ref["dice"], abs=1e-6)
        assert ours["iou"] == pytest.approx(ref["iou"], abs=1e-6)
        # MONAI returns float32
        assert hd95(pred, gt) == pytest.approx(ref["hd95"], rel=1e-5)
        assert assd(pred, gt) == pytest.approx(ref["assd"], rel=1e-5)


@pytest.mark.data
def test_distances_in_mm_equal_monai(kvasir_pairs):
    gt, pred = kvasir_pairs[1]
    spacing = (0.7, 1.3)
    ref = _monai(pred, gt, spacing=spacing)
    assert hd95(pred, gt, spacing) == pytest.approx(ref["hd95"], rel=1e-5)
    assert assd(pred, gt, spacing) == pytest.approx(ref["assd"], rel=1e-5)
    assert hd95(pred, gt, spacing) != pytest.approx(hd95(pred, gt), rel=1e-3)


def test_3d_volume_equals_monai():
    gt = np.zeros((12, 20, 20), bool)
    gt[3:9, 4:15, 5:16] = True
    pred = np.roll(gt, (1, 2, -1), (0, 1, 2))
    pred[5, 2, 2] = True  # an outlier voxel
    ref = _monai(pred, gt, spacing=(3.0, 1.0, 1.0))
    assert hd95(pred, gt, (3.0, 1.0, 1.0)) == pytest.approx(ref["hd95"], rel=1e-5)
    assert assd(pred, gt, (3.0, 1.0, 1.0)) == pytest.approx(ref["assd"], rel=1e-5)


def test_counts_and_ratios():
    gt = np.zeros((10, 10), bool)
    gt[0:4, 0:5] = True  # 20 px
    pred = np.zeros((10, 10), np.uint8)
    pred[0:4, 0:4] = 200  # 16 TP
    pred[9, 9] = 128  # one FP (128 > 127)
    pred[8, 8] = 127  # not foreground
    s = segmentation_scores(pred, gt)
    assert s["dice"] == pytest.approx(2 * 16 / (17 + 20))
    assert s["iou"] == pytest.approx(16 / 21)
    assert s["precision"] == pytest.approx(16 / 17)
    assert s["recall"] == pytest.approx(16 / 20)
    assert s["specificity"] == pytest.approx(79 / 80)
    assert s["accuracy"] == pytest.approx(95 / 100)


def test_empty_mask_conventions():
    empty = np.zeros((8, 8), bool)
    full = np.zeros((8, 8), bool)
    full[2:5, 2:5] = True
    both = segmentation_scores(empty, empty)
    assert all(v == 1.0 for v in both.values())
    assert hd95(empty, empty) == 0.0 and assd(empty, empty) == 0.0
    one = segmentation_scores(empty, full)
    assert one["dice"] == 0.0 and one["precision"] == 0.0 and one["recall"] == 0.0
    assert math.isinf(hd95(empty, full)) and math.isinf(assd(full, empty))


def test_streaming_mean_skips_infinite_distances():
    m = SegmentationMetrics(distances=True)
    gt = np.zeros((16, 16), bool)
    gt[4:10, 4:10] = True
    m.update(gt, gt, id="same")
    m.update(np.zeros_like(gt), gt, id="missed")
    agg = m.aggregate()
    assert agg["count"] == 2
    assert agg["dice"] == pytest.approx(0.5)
    assert agg["hd95"] == 0.0 and agg["hd95_excluded"] == 1
    assert m.ids == ["same", "missed"]


def test_table_metrics_equal_scikit_learn():
    """The five columns of the lesion tables (Dice, Jaccard, accuracy, sensitivity, specificity)
    against scikit-learn's independent implementations, on random and shifted masks."""
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    gt = ndimage.gaussian_filter(rng.random((64, 80)), 6) > 0.5
    for pred in (rng.random((64, 80)), np.roll(gt, (5, -3), (0, 1)) * 0.9, ndimage.binary_dilation(gt, iterations=3)):
        s = segmentation_scores(pred, gt)
        p, g = (pred > 0.5).ravel(), gt.ravel()
        assert s["dice"] == pytest.approx(sk.f1_score(g, p))
        assert s["iou"] == pytest.approx(sk.jaccard_score(g, p))
        assert s["accuracy"] == pytest.approx(sk.accuracy_score(g, p))
        assert s["recall"] == pytest.approx(sk.recall_score(g, p))
        assert s["specificity"] == pytest.approx(sk.recall_score(g, p, pos_label=False))
