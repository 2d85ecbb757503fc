"""Train the colorization GAN briefly on colour medical images turned gray; write sample panels.

Training images: isic2017-unlabeled and the PraNet training split of Kvasir-SEG and
CVC-ClinicDB, centre-cropped and resized to --size. Panels (gray input | colorized |
original) on held-out PraNet test images go to docs/img/colorize_panels.png; numbers
(L1 and PSNR of colorized vs original on those held-out images, against the plain
gray image as the baseline) to benchmarks/results/enhance_colorize.{json,md}.

    .venv/bin/python benchmarks/enhance_colorize.py --size 64 --minutes 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from medattn.data import pranet_split
from medattn.enhance.colorize import colorize, load_colour_images, panel, train_gan
from medattn.io import write_image
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=shared_data_root(), help="shared data root")
    ap.add_argument("--run", type=Path, default=Path("runs/colorizer"), help="where the generator is written")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="results folder")
    ap.add_argument("--img", type=Path, default=Path("docs/img"), help="folder for the panel PNG")
    ap.add_argument("--size", type=int, default=64, help="training image side")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=8.0, help="training time limit")
    ap.add_argument("--limit", type=int, default=0, help="use only N training images (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    split = pranet_split(args.data)
    isic = sorted((args.data / "isic2017-unlabeled").rglob("*.jpg"))
    paths = isic + [s.image for s in split["train"]]
    if args.limit:
        paths = [paths[i] for i in np.random.default_rng(args.seed).permutation(len(paths))[: args.limit]]
    images = load_colour_images(paths, args.size)
    res = train_gan(images, steps=args.steps, batch=args.batch, time_limit_s=args.minutes * 60, run_dir=args.run,
                    seed=args.seed)
    test = split["test_kvasir"][:40] + split["test_clinicdb"][:24]
    held = load_colour_images([s.image for s in test], args.size * 2, progress=False)
    gray = np.rint(held.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    col = np.stack([colorize(res.generator, g, size=args.size) for g in gray])
    base = np.repeat(gray[..., None], 3, axis=3)
    result = {"steps": res.steps, "train_images": len(images), "size": args.size, "held_out_images": len(test),
              "l1_colorized": float(np.abs(col.astype(float) - held).mean() / 255),
              "l1_gray": float(np.abs(base.astype(float) - held).mean() / 255),
              "psnr_colorized": float(np.mean([_psnr(c, h) for c, h in zip(col, held, strict=True)])),
              "psnr_gray": float(np.mean([_psnr(b, h) for b, h in zip(base, held, strict=True)])),
              "history": res.history}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "enhance_colorize.json", json.dumps(result, indent=2) + "\n")
    md = ["# Colorization GAN on held-out colour images", "",
          f"{res.steps} steps (batch {args.batch}, {args.size}px, {len(images)} training images, CPU).",
          f"On {len(test)} held-out PraNet test images ({args.size * 2}px): L1 {result['l1_colorized']:.4f} "
          f"(gray replicated: {result['l1_gray']:.4f}), PSNR {result['psnr_colorized']:.2f} dB "
          f"(gray: {result['psnr_gray']:.2f} dB)."]
    atomic_write_text(args.out / "enhance_colorize.md", "\n".join(md) + "\n")
    rows = [panel(g, c, h) for g, c, h in zip(gray[:6], col[:6], held[:6], strict=True)]
    args.img.mkdir(parents=True, exist_ok=True)
    write_image(args.img / "colorize_panels.png", np.concatenate(rows, axis=0))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
