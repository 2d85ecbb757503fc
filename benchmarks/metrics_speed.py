"""Time ``medattn.evaluation`` against pysodmetrics on the 100 Kvasir-SEG test masks.

Predictions are realistic probability maps made from each ground truth
(Gaussian blur of a random width, a random shift, a little noise, stretched to
0..255), written as PNG at native resolution. Both sides read the same files
with the same readers (``medattn.io``) and compute the same 13 numbers; the
script checks that they agree to 1e-6 and reports the speed ratio.

    .venv/bin/python benchmarks/metrics_speed.py [--data ../shared/data] [--workers N]

Writes benchmarks/results/metrics_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medattn.evaluation import METRIC_NAMES, evaluate_pairs
from medattn.evaluation.evaluator import default_workers
from medattn.io import read_gray, read_mask
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root

HERE = Path(__file__).resolve().parent


def make_predictions(mask_paths: list[Path], out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for path in mask_paths:
        gt = read_mask(path).astype(np.float64)
        sigma = rng.uniform(2, 12)
        shift = tuple(int(s) for s in rng.integers(-15, 16, size=2))
        prob = np.roll(ndimage.gaussian_filter(gt, sigma), shift, axis=(0, 1))
        prob = prob + rng.normal(0, 0.02, prob.shape) * (prob > 0.05)
        prob = np.clip(prob, 0, None)
        prob = np.round(255 * prob / prob.max()).astype(np.uint8)  # min 0, max 255 as a sigmoid map saved to 8 bit
        Image.fromarray(prob).save(out / (path.stem + ".png"))


def run_pysodmetrics(pairs: list[tuple[str, Path, Path]]) -> dict[str, float]:
    import py_sod_metrics as m

    sm, em, wfm, mae = m.Smeasure(), m.Emeasure(), m.WeightedFmeasure(), m.MAE()
    fm = m.FmeasureV2(
        metric_handlers={
            "dice": m.DICEHandler(with_dynamic=True, with_adaptive=False, with_binary=True),
            "iou": m.IOUHandler(with_dynamic=True, with_adaptive=False, with_binary=True),
            "precision": m.PrecisionHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
            "recall": m.RecallHandler(with_dynamic=False, with_adaptive=False, with_binary=True),
        }
    )
    for _, pred_path, gt_path in pairs:
        gt = read_mask(gt_path).astype(np.uint8) * 255
        pred = read_gray(pred_path)
        for metric in (sm, em, wfm, mae, fm):
            metric.step(pred, gt)
    e = em.get_results()["em"]
    f = fm.get_results()
    return {
        "meanDice": float(f["dice"]["dynamic"].mean()),
        "meanIoU": float(f["iou"]["dynamic"].mean()),
        "Sm": float(sm.get_results()["sm"]),
        "wFm": float(wfm.get_results()["wfm"]),
        "meanEm": float(e["curve"].mean()),
        "maxEm": float(e["curve"].max()),
        "adpEm": float(e["adp"]),
        "maxDice": float(f["dice"]["dynamic"].max()),
        "MAE": float(mae.get_results()["mae"]),
        "dice": float(f["dice"]["binary"]),
        "iou": float(f["iou"]["binary"]),
        "precision": float(f["precision"]["binary"]),
        "recall": float(f["recall"]["binary"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_data_root(), help="the shared data folder")
    parser.add_argument("--workers", type=int, default=None, help="evaluator processes (default: all CPUs)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the results")
    args = parser.parse_args()
    if args.data is None:
        parser.error("no data folder: pass --data or set MEDATTN_DATA")
    names = (args.data / "splits" / "kvasir-seg_pranet_test.txt").read_text().split()
    masks = [args.data / "kvasir-seg" / "masks" / n for n in names]

    with tempfile.TemporaryDirectory() as tmp:
        pred_dir = Path(tmp)
        make_predictions(masks, pred_dir)
        pairs = [(m.stem, pred_dir / (m.stem + ".png"), m) for m in masks]
        for _, p, g in pairs:  # warm the file cache for both sides
            p.read_bytes(), g.read_bytes()

        t0 = time.perf_counter()
        ref = run_pysodmetrics(pairs)
        t_ref = time.perf_counter() - t0

        workers = args.workers or default_workers()
        t0 = time.perf_counter()
        ours = evaluate_pairs(pairs, pred_type="prob", workers=workers).mean
        t_ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        evaluate_pairs(pairs, pred_type="prob", workers=1)
        t_serial = time.perf_counter() - t0

    diff = {k: abs(ours[k] - ref[k]) for k in METRIC_NAMES}
    identical = max(diff.values()) <= 1e-6
    ratio = t_ref / t_ours
    sizes = [Image.open(m).size for m in masks]
    report = {
        "images": len(pairs),
        "pixels_mean": float(np.mean([w * h for w, h in sizes])),
        "pysodmetrics_s": round(t_ref, 3),
        "medattn_s": round(t_ours, 3),
        "medattn_serial_s": round(t_serial, 3),
        "workers": workers,
        "speedup": round(ratio, 2),
        "speedup_serial": round(t_ref / t_serial, 2),
        "identical_1e-6": identical,
        "max_abs_diff": max(diff.values()),
        "medattn": ours,
        "pysodmetrics": ref,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    rows = "\n".join(f"| {k} | {ours[k]:.6f} | {ref[k]:.6f} | {diff[k]:.1e} |" for k in METRIC_NAMES)
    md = (
        f"# Evaluator speed: 100 Kvasir-SEG test masks at native resolution\n\n"
        f"| | time (s) |\n|---|---|\n| pysodmetrics (1 process) | {t_ref:.2f} |\n"
        f"| medattn, {workers} workers | {t_ours:.2f} |\n| medattn, 1 process | {t_serial:.2f} |\n\n"
        f"Speed-up: **{ratio:.1f}x** ({t_ref / t_serial:.1f}x in one process); "
        f"numbers identical to 1e-6: {identical}.\n\n"
        f"| metric | medattn | pysodmetrics | abs diff |\n|---|---|---|---|\n{rows}\n"
    )
    atomic_write_text(args.out / "metrics_speed.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / "metrics_speed.md", md)
    print(md)
    print(f"speed-up {ratio:.2f}x, identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
