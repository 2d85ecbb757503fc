"""Does GRCSF's MAE residual map highlight lesions? Per-image AUROC against PH2 lesion masks.

For every PH2 image (resized to ``--size``) the residual map
``MAE.residual_map`` (4 complementary masking passes) is scored as a per-pixel
lesion detector against the lesion mask; the mean and median AUROC over the
images are reported for each ``--mae`` weights file and for a randomly
initialised MAE of the same architecture (the contrast-only baseline).

Writes ``benchmarks/results/grcsf_residual_auroc.{json,md}``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grcsf_residual_auroc.py \
        --mae runs/pretrain_mae_isic/mae.safetensors --size 128
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from medattn.data import SegmentationDataset, discover
from medattn.models.grcsf import read_mae_file
from medattn.models.mae import MAE
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUROC with tie-averaged ranks."""
    ranks = rankdata(score)
    pos = int(label.sum())
    neg = label.size - pos
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def evaluate(net: MAE, dataset: SegmentationDataset, masks: int) -> list[float]:
    net.eval()
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        img = item["image"][None]
        if img.shape[1] != net.in_channels:
            img = img.mean(1, keepdim=True) if net.in_channels == 1 else img.expand(-1, 3, -1, -1)
        with torch.no_grad():
            r = net.residual_map(img, n_masks=masks).numpy().ravel()
        m = item["mask"].numpy().ravel() > 0.5
        if 0 < m.sum() < m.size:
            out.append(auroc(r, m))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mae", action="append", required=True, help="MAE weights from `medattn pretrain` (repeatable)")
    ap.add_argument("--size", type=int, default=128, help="images are resized to SIZE x SIZE")
    ap.add_argument("--masks", type=int, default=4, help="complementary masking passes")
    ap.add_argument("--data", type=Path, default=None, help="datasets folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    root = args.data or shared_data_root()
    if root is None:
        raise SystemExit("error: ../shared/data not found; pass --data")
    dataset = SegmentationDataset(discover(root / "ph2").samples, size=(args.size, args.size))
    rows = []
    for path in args.mae:
        state, opts = read_mae_file(path)
        torch.manual_seed(0)
        trained, untrained = MAE(**opts), MAE(**opts)
        trained.load_state_dict(state)
        for name, net in ((str(path), trained), (f"random init ({Path(path).name} architecture)", untrained)):
            aucs = evaluate(net, dataset, args.masks)
            rows.append({"mae": name, "images": len(aucs), "mean_auroc": float(np.mean(aucs)),
                         "median_auroc": float(np.median(aucs))})
            print(f"{name}: mean AUROC {rows[-1]['mean_auroc']:.3f} (median {rows[-1]['median_auroc']:.3f})")
    meta = {"size": args.size, "masks": args.masks, "dataset": "ph2", "cpus": os.cpu_count()}
    atomic_write_text(args.out / "grcsf_residual_auroc.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = ["| MAE | images | mean AUROC | median AUROC |", "|---|---|---|---|"]
    md += [f"| {r['mae']} | {r['images']} | {r['mean_auroc']:.3f} | {r['median_auroc']:.3f} |" for r in rows]
    atomic_write_text(args.out / "grcsf_residual_auroc.md", "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
