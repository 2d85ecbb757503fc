"""FROC from boxes against MONAI's compute_froc_curve_data / compute_froc_score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medattn.metrics import box_iou, froc, sensitivity_at_fp

monai_metrics = pytest.importorskip("monai.metrics")


def _jitter(box, rng, scale):
    return np.asarray(box, float) + rng.normal(0, scale, 4)


def _simulated(gt_boxes, seed=0):
    """Detections around real boxes: good, poor and duplicate hits, plus false positives."""
    rng = np.random.default_rng(seed)
    preds, scores = [], []
    for gts in gt_boxes:
        p, s = [], []
        for box in gts:
            w = box[2] - box[0]
            r = rng.uniform()
            if r < 0.7:
                p.append(_jitter(box, rng, 0.03 * w))
                s.append(rng.uniform(0.4, 1.0))
            if r < 0.2:  # a duplicate hit
                p.append(_jitter(box, rng, 0.05 * w))
                s.append(rng.uniform(0.1, 0.5))
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 400, 2)
            p.append([x, y, x + 40, y + 30])
            s.append(rng.uniform(0.0, 0.9))
        preds.append(np.asarray(p).reshape(-1, 4))
        scores.append(np.asarray(s))
    return preds, scores


def _monai_froc(preds, scores, gts, thr=0.5):
    fp_probs, tp_probs = [], []
    for p, s, g in zip(preds, scores, gts, strict=True):
        # independent matching: explicit loops
        best = [0.0] * len(g)
        for box, score in zip(p, s, strict=True):
            ious = [float(box_iou(box, gb)[0, 0]) for gb in g]
            if ious and max(ious) >= thr:
                j = int(np.argmax(ious))
                best[j] = max(best[j], score)
            else:
                fp_probs.append(score)
        tp_probs.extend(best)
    fps, sens = monai_metrics.compute_froc_curve_data(
        np.asarray(fp_probs), np.asarray(tp_probs), num_targets=len(tp_probs), num_images=len(gts)
    )
    return fps, sens


@pytest.mark.data
def test_froc_equals_monai_on_kvasir_boxes(shared_data):
    data = json.loads((shared_data / "kvasir-seg" / "kavsir_bboxes.json").read_text())
    gts = []
    for entry in list(data.values())[:60]:
        boxes = [[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in entry["bbox"]]
        gts.append(np.asarray(boxes, float))
    preds, scores = _simulated(gts)
    result = froc(preds, scores, gts)
    fps, sens = _monai_froc(preds, scores, gts)
    np.testing.assert_allclose(result.fps, fps, atol=1e-12)
    np.testing.assert_allclose(result.sensitivity, sens, atol=1e-12)
    ref_score = monai_metrics.compute_froc_score(fps, sens, eval_thresholds=(0.25, 0.5, 1, 2, 4, 8))
    assert result.score == pytest.approx(ref_score, abs=1e-12)
    for n in (1, 2, 3, 4):
        ref = monai_metrics.compute_froc_score(fps, sens, eval_thresholds=(n,))
        assert sensitivity_at_fp(result, n) == pytest.approx(ref, abs=1e-12)
    assert result.sensitivities[1.0] == pytest.approx(sensitivity_at_fp(result, 1))


def test_hand_counted_example():
    gts = [np.array([[0, 0, 10, 10]]), np.array([[20, 20, 40, 40], [50, 50, 60, 60]])]
    preds = [
        np.array([[0, 0, 10, 10], [1, 0, 11, 10], [70, 70, 80, 80]]),  # hit, duplicate, FP
        np.array([[20, 20, 40, 41]]),  # hit; second target missed
    ]
    scores = [np.array([0.9, 0.8, 0.6]), np.array([0.7])]
    r = froc(preds, scores, gts)
    assert list(r.tp_scores) == [0.9, 0.7, 0.0]
    assert list(r.fp_scores) == [0.6]
    # thresholds 0.6, 0.7, 0.9 (0 skipped): FP/image 0.5, 0, 0; sensitivity 2/3, 2/3, 1/3
    np.testing.assert_allclose(r.fps, [0.5, 0, 0, 0])
    np.testing.assert_allclose(r.sensitivity, [2 / 3, 2 / 3, 1 / 3, 0])
    assert r.num_targets == 3 and r.num_images == 2


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30])[0, 0] == 0.0


def test_mismatched_lists_rejected():
    with pytest.raises(ValueError, match="one entry per image"):
        froc([np.zeros((0, 4))], [], [np.zeros((0, 4))])
