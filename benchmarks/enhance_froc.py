"""Table 1 of seed paper 002 on polyp data: RetinaNet sensitivity at 1-4 FP/image per input arm.

Trains one MONAI RetinaNet per arm (gray, +Color, +CAWE, +Color+CAWE, and the
colour originals as a reference) on the PraNet training images and tests on the
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
    evaluate_arm,
    load_detection_set,
    make_arms,
    plot_froc,
    train_detector,
)
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=shared_data_root(), help="shared data root")
    ap.add_argument("--classifier", required=True, help="lesion classifier for CAWE (run folder / file / name)")
    ap.add_argument("--colorizer", required=True, help="colorization generator (run folder / file / name)")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    ap.add_argument("--quick", action="store_true", help="CPU budget: 128 px, 300 training images, 4 epochs")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--train-limit", type=int, default=0, help="use only N training images (0 = all 1450)")
    ap.add_argument("--minutes", type=float, default=0, help="per-arm training time limit (0 = none)")
    ap.add_argument("--iou", type=float, default=0.3, help="IoU at which a box hits a polyp")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--plot", type=Path, default=Path("docs/img"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.epochs, args.train_limit = 128, 4, args.train_limit or 300
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    arms = [a for a in args.arms.split(",") if a]
    split = pranet_split(args.data)
    train = split["train"]
    if args.train_limit and args.train_limit < len(train):
        train = ratio_split(train, (args.train_limit, len(train) - args.train_limit), seed=args.seed)["train"]
    test = split["test_kvasir"] + split["test_clinicdb"]
    kv = load_kvasir_boxes(args.data / "kvasir-seg")
    t0 = time.monotonic()
    tr, te = load_detection_set(train, args.size, kv), load_detection_set(test, args.size, kv)
    tr_arms = make_arms(tr.images, args.classifier, args.colorizer, arms)
    te_arms = make_arms(te.images, args.classifier, args.colorizer, arms)
    prep_s = time.monotonic() - t0
    results = {}
    for arm in arms:
        t1 = time.monotonic()
        det, hist = train_detector(tr_arms[arm], tr.boxes, epochs=args.epochs, seed=args.seed,
                                   time_limit_s=args.minutes * 60 or None)
        results[arm] = {**evaluate_arm(det, te_arms[arm], te.boxes, iou=args.iou), "history": hist,
                        "train_seconds": round(time.monotonic() - t1)}
        print(f"{arm}: " + ", ".join(f"Sens@{k} {v:.3f}" for k, v in results[arm]["sens"].items()), flush=True)
    limit = f" (at most {args.minutes:g} min)" if args.minutes else ""
    budget = (f"{args.size}px, {len(train)} training images, {args.epochs} epochs per arm{limit}, IoU >= {args.iou}, "
              f"CPU ({os.cpu_count()} cores shared)")
    tag = "enhance_froc_quick" if args.quick else "enhance_froc"
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"budget": budget, "quick": args.quick, "size": args.size, "epochs": args.epochs,
               "train_images": len(train), "test_images": len(test), "iou": args.iou, "arms": results,
               "classifier": str(args.classifier), "colorizer": str(args.colorizer),
               "prep_seconds": round(prep_s), "machine": platform.machine()}
    atomic_write_text(args.out / f"{tag}.json", json.dumps(payload, indent=2) + "\n")
    names = {"gray": "RetinaNet (gray)", "color": "RetinaNet + Color", "cawe": "RetinaNet + CAWE",
             "color_cawe": "RetinaNet + Color + CAWE", "rgb": "RetinaNet (colour originals, reference)"}
    lines = [f"Budget: {budget}.", "", "| arm | Sens@1 | Sens@2 | Sens@3 | Sens@4 | FROC score | max sens. |",
             "|---|---|---|---|---|---|---|"]
    for arm, r in results.items():
        s = r["sens"]
        lines.append(f"| {names.get(arm, arm)} | " + " | ".join(f"{100 * s[k]:.1f}%" for k in ("1", "2", "3", "4"))
                     + f" | {r['froc_score']:.3f} | {100 * r['max_sensitivity']:.1f}% |")
    atomic_write_text(args.out / f"{tag}.md", "\n".join(lines) + "\n")
    plot_froc(results, args.plot / f"{tag}.png", f"RetinaNet FROC, PraNet test (162 images); {budget}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
