"""Train the weakly-supervised lesion classifier on crops and score where CAWE points on held-out images.

Training: PraNet training images (Kvasir-SEG + CVC-ClinicDB) and 80 % of PH2, crops
labelled lesion / background (medattn.enhance.classifier); 10 % of those images
(by image) for early stopping. Held out: the PraNet test images (100 Kvasir + 62
ClinicDB) and the other 20 % of PH2, never seen in training.

Writes benchmarks/results/enhance_cawe.{json,md} and the model to --run (default runs/cawe).

    .venv/bin/python benchmarks/enhance_cawe.py --epochs 12 --minutes 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from medattn.enhance.classifier import (
    auc,
    build_crops,
    localisation_scores,
    predict_crops,
    train_classifier,
    weak_label_split,
    whole_image_size,
)
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root


def build_parser() -> argparse.ArgumentParser:
    """The command line (also read by scripts/bundle_model.py to describe a bundled classifier)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=shared_data_root(), help="shared data root")
    ap.add_argument("--run", type=Path, default=Path("runs/cawe"), help="where the classifier is written")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="results folder")
    ap.add_argument("--backbone", default="resnet18", help="resnet18 | resnet34 | resnet50 | mobilenet_v2")
    ap.add_argument("--width", type=float, default=0.25, help="resnet18 width multiplier")
    ap.add_argument("--pretrained", default=None, help="encoder weights file (e.g. the ImageNet MobileNetV2)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--crop", type=int, default=64, help="crop side in pixels")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=8.0, help="training time limit")
    ap.add_argument("--limit", type=int, default=0, help="use only N training images (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    parts = weak_label_split(args.data, args.limit, args.seed)
    tr, va = parts["train"], parts["val"]
    test = parts["test_kvasir"] + parts["test_clinicdb"] + parts["test_ph2"]
    t0 = time.monotonic()
    train_set, val_set = build_crops(tr, args.crop), build_crops(va, args.crop)
    test_set = build_crops(test, args.crop)
    print(f"crops: train {len(train_set)} ({train_set.positives} lesion), val {len(val_set)}, "
          f"test {len(test_set)} ({test_set.positives} lesion) in {time.monotonic() - t0:.0f} s", flush=True)
    t1 = time.monotonic()
    res = train_classifier(train_set, val_set, backbone=args.backbone, width=args.width, epochs=args.epochs,
                           pretrained=args.pretrained, lr=args.lr,
                           run_dir=args.run, time_limit_s=args.minutes * 60, seed=args.seed)
    train_s = time.monotonic() - t1
    probs = predict_crops(res.model, test_set)
    size = whole_image_size(args.crop, 0.5)
    per_set = {}
    for name in ("kvasir", "clinicdb", "ph2"):
        samples = parts[f"test_{name}"]
        per_set[name] = localisation_scores(res.model, samples, size=size)
    result = {
        "command": shlex.join(["python", "benchmarks/enhance_cawe.py", *(sys.argv[1:] if argv is None else argv)]),
        "run": str(args.run),
        "classifier": {"backbone": args.backbone, "width": args.width if args.backbone == "resnet18" else None,
                       "pretrained": args.pretrained, "lr": args.lr, "crop": args.crop,
                       "params": sum(p.numel() for p in res.model.parameters()),
                       "best_epoch": res.best_epoch, "epochs_run": len(res.history), "train_seconds": round(train_s)},
        "crops": {"train": len(train_set), "train_lesion": train_set.positives, "val": len(val_set),
                  "test": len(test_set), "test_lesion": test_set.positives},
        "test_crop_auc": auc(test_set.labels, probs),
        "test_crop_accuracy": float(((probs > 0.5) == (test_set.labels > 0.5)).mean()),
        "whole_image_size": size,
        "localisation": per_set,
        "history": res.history,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{torch.get_num_threads()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"enhance_cawe_{args.backbone}"
    atomic_write_text(args.out / f"{tag}.json", json.dumps(result, indent=2) + "\n")
    lines = ["# CAWE localisation on held-out images", "",
             f"Classifier: {args.backbone}" + (f" (width {args.width})" if args.backbone == "resnet18" else "")
             + f", {result['classifier']['params']:,} parameters, "
             f"{args.crop}px crops, best epoch {res.best_epoch} of {len(res.history)} ({train_s:.0f} s on CPU).",
             f"Held-out crops: AUC {result['test_crop_auc']:.3f}, accuracy {result['test_crop_accuracy']:.3f} "
             f"({len(test_set)} crops, {test_set.positives} with lesion).", "",
             f"CAWE on whole held-out images at {size}x{size}:", "",
             "| set | images | pointing game | chance | energy in mask | chance |", "|---|---|---|---|---|---|"]
    for name, r in per_set.items():
        lines.append(f"| {name} | {r['images']} | {r['pointing']:.3f} | {r['pointing_chance']:.3f} | "
                     f"{r['energy']:.3f} | {r['energy_chance']:.3f} |")
    atomic_write_text(args.out / f"{tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
