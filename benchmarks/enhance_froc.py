"""Table 1 of seed paper 002 on polyp data: RetinaNet sensitivity at 1-4 FP/image per input arm.

Trains one MONAI RetinaNet per arm (gray, +Color, +CAWE, +Color+CAWE, the colour
originals as a reference, and the classical enhancement baselines CLAHE, unsharp
masking and histogram equalisation, stand-ins for the paper's AFDA and MedGA whose
code we do not have: ``medattn.enhance.classic``) on the PraNet training images and tests on the
PraNet test images (Kvasir 100 + ClinicDB 62); writes
benchmarks/results/enhance_froc{,_quick}.{json,md} and the FROC plot PNG.

    # what docs/enhancement.md reports (CPU, minutes):
    .venv/bin/python benchmarks/enhance_froc.py --quick --classifier runs/cawe --colorizer runs/colorizer
    # a full run (a GPU or hours of CPU):
    .venv/bin/python benchmarks/enhance_froc.py --size 512 --epochs 40 --train-limit 0 \\
        --classifier runs/cawe --colorizer runs/colorizer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from medattn.data import load_kvasir_boxes, pranet_split, ratio_split
from medattn.enhance.detection import (
    ARMS,
    CLASSIC_ARMS,
    evaluate_arm,
    load_detection_set,
    make_arms,
    plot_froc,
    train_detector,
)
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root


def aggregate_seeds(rs: list[dict]) -> dict:
    """One arm over seeds: mean and std of Sens@k and the FROC score, the mean curve on a common FP grid."""
    import numpy as np

    grid = np.linspace(0.0, 4.5, 91)
    curves = []
    for r in rs:
        fps, sens = np.asarray(r["curve_fps"], float), np.asarray(r["curve_sensitivity"], float)
        order = np.argsort(fps, kind="stable")
        # sensitivity reached at <= x FPs per image: a step function, 0 before the first operating point
        curves.append(np.interp(grid, fps[order], sens[order], left=0.0) if len(fps) else np.zeros_like(grid))
    keys = rs[0]["sens"].keys()
    froc = [r["froc_score"] for r in rs]
    return {"sens": {k: float(np.mean([r["sens"][k] for r in rs])) for k in keys},
            "sens_std": {k: float(np.std([r["sens"][k] for r in rs])) for k in keys},
            "froc_score": float(np.mean(froc)), "froc_score_std": float(np.std(froc)), "froc_per_seed": froc,
            "max_sensitivity": float(np.mean([r["max_sensitivity"] for r in rs])),
            "curve_fps": grid.tolist(), "curve_sensitivity": np.mean(curves, axis=0).tolist(), "runs": rs}


def _pm(mean: float, std: float, scale: float, unit: str, digits: int = 1) -> str:
    text = f"{scale * mean:.{digits}f}{unit}"
    return text if std == 0 else f"{text} ± {scale * std:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=shared_data_root(), help="shared data root")
    ap.add_argument("--classifier", required=True, help="lesion classifier for CAWE (run folder / file / name)")
    ap.add_argument("--colorizer", required=True, help="colorization generator (run folder / file / name)")
    ap.add_argument("--arms", default=",".join(ARMS + CLASSIC_ARMS),
                    help=f"comma-separated subset of {','.join(ARMS + CLASSIC_ARMS)}")
    ap.add_argument("--quick", action="store_true", help="CPU budget: 128 px, 300 training images, 4 epochs")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--train-limit", type=int, default=0, help="use only N training images (0 = all 1450)")
    ap.add_argument("--test-limit", type=int, default=0,
                    help="score only the first N test images of each set (smoke runs; 0 = all 100 + 62)")
    ap.add_argument("--minutes", type=float, default=0, help="per-arm training time limit (0 = none)")
    ap.add_argument("--iou", type=float, default=0.3, help="IoU at which a box hits a polyp")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--plot", type=Path, default=Path("docs/img"))
    ap.add_argument("--seeds", default="0",
                    help="comma-separated detector seeds; each arm is trained once per seed and the table "
                         "gives mean +- std (the training subset is fixed by the first seed)")
    ap.add_argument("--tag", default=None, help="output name (default enhance_froc or enhance_froc_quick)")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        ap.error("--seeds: give at least one seed")
    if args.quick:
        args.size, args.epochs, args.train_limit = 128, 4, args.train_limit or 300
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    arms = [a for a in args.arms.split(",") if a]
    split = pranet_split(args.data)
    train = split["train"]
    if args.train_limit and args.train_limit < len(train):
        train = ratio_split(train, (args.train_limit, len(train) - args.train_limit), seed=seeds[0])["train"]
    cut = args.test_limit or None
    test = split["test_kvasir"][:cut] + split["test_clinicdb"][:cut]
    kv = load_kvasir_boxes(args.data / "kvasir-seg")
    t0 = time.monotonic()
    tr, te = load_detection_set(train, args.size, kv), load_detection_set(test, args.size, kv)
    tr_arms = make_arms(tr.images, args.classifier, args.colorizer, arms)
    te_arms = make_arms(te.images, args.classifier, args.colorizer, arms)
    prep_s = time.monotonic() - t0
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            t1 = time.monotonic()
            det, hist = train_detector(tr_arms[arm], tr.boxes, epochs=args.epochs, seed=seed,
                                       time_limit_s=args.minutes * 60 or None)
            r = {**evaluate_arm(det, te_arms[arm], te.boxes, iou=args.iou), "history": hist, "seed": seed,
                 "train_seconds": round(time.monotonic() - t1)}
            runs[arm].append(r)
            print(f"seed {seed} {arm}: " + ", ".join(f"Sens@{k} {v:.3f}" for k, v in r["sens"].items())
                  + f", FROC {r['froc_score']:.3f}", flush=True)
    results = {arm: aggregate_seeds(rs) for arm, rs in runs.items()}
    limit = f" (at most {args.minutes:g} min)" if args.minutes else ""
    budget = (f"{args.size}px, {len(train)} training images, {args.epochs} epochs per arm{limit}, IoU >= {args.iou}, "
              f"{len(seeds)} seed(s) per arm, CPU ({os.cpu_count()} cores shared)")
    tag = args.tag or ("enhance_froc_quick" if args.quick else "enhance_froc")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"budget": budget, "quick": args.quick, "size": args.size, "epochs": args.epochs,
               "train_images": len(train), "seeds": seeds, "test_images": len(test), "iou": args.iou, "arms": results,
               "classifier": str(args.classifier), "colorizer": str(args.colorizer),
               "prep_seconds": round(prep_s), "machine": platform.machine()}
    atomic_write_text(args.out / f"{tag}.json", json.dumps(payload, indent=2) + "\n")
    names = {"gray": "RetinaNet (gray)", "color": "RetinaNet + Color", "cawe": "RetinaNet + CAWE",
             "color_cawe": "RetinaNet + Color + CAWE", "rgb": "RetinaNet (colour originals, reference)",
             "clahe": "RetinaNet + CLAHE (stand-in for AFDA / MedGA)",
             "unsharp": "RetinaNet + unsharp masking (stand-in for AFDA / MedGA)",
             "histeq": "RetinaNet + histogram equalisation (stand-in for AFDA / MedGA)"}
    multi = len(seeds) > 1
    lines = [f"Budget: {budget}." + (" Mean ± std over seeds." if multi else ""), "",
             "| arm | Sens@1 | Sens@2 | Sens@3 | Sens@4 | FROC score | max sens. |"
             + (" FROC − gray, per seed |" if multi and "gray" in results else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if multi and "gray" in results else "")]
    for arm, r in results.items():
        cells = [_pm(r["sens"][k], r["sens_std"][k], 100, "%") for k in ("1", "2", "3", "4")]
        cells += [_pm(r["froc_score"], r["froc_score_std"], 1, "", 3), f"{100 * r['max_sensitivity']:.1f}%"]
        if multi and "gray" in results:
            cells.append(" ".join(f"{a - b:+.3f}" for a, b in zip(r["froc_per_seed"], results["gray"]["froc_per_seed"],
                                                                   strict=True)))
        lines.append(f"| {names.get(arm, arm)} | " + " | ".join(cells) + " |")
    atomic_write_text(args.out / f"{tag}.md", "\n".join(lines) + "\n")
    plot_froc(results, args.plot / f"{tag}.png", f"RetinaNet FROC, PraNet test (162 images); {budget}"
              + (f"; mean sensitivity over {len(seeds)} seeds" if multi else ""))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
