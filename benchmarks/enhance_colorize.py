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
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medattn.enhance.colorize import (
    colorization_scores,
    colour_test_samples,
    colour_training_paths,
    load_colour_images,
    panel,
    train_gan,
)
from medattn.io import write_image
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root


def build_parser() -> argparse.ArgumentParser:
    """The command line (also read by scripts/bundle_model.py to describe a bundled colorizer)."""
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
    ap.add_argument("--curves", type=Path, default=None,
                    help="write the generator's L1 / feature / adversarial loss curves to this PNG")
    return ap


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """The generator's loss terms (eqs. 3-6: L1, feature matching, adversarial) and D's loss per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.utils.figures import save_figure_png

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.6))
    for ax, key, title in zip(axes, ("l1", "feature", "adv", "loss_d"),
                              ("L1", "feature (D's maps)", "adversarial (G)", "discriminator"), strict=True):
        ax.plot(steps, [h[key] for h in history], lw=1.2, marker="." if len(steps) < 30 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_figure_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "2"))))
    images = load_colour_images(colour_training_paths(args.data, args.limit, args.seed), args.size)
    t0 = time.monotonic()
    res = train_gan(images, steps=args.steps, batch=args.batch, time_limit_s=args.minutes * 60, run_dir=args.run,
                    seed=args.seed)
    train_s = time.monotonic() - t0
    test = colour_test_samples(args.data)
    held = load_colour_images([s.image for s in test], args.size * 2, progress=False)
    scores, gray, col = colorization_scores(res.generator, held, size=args.size)
    result = {"command": shlex.join(["python", "benchmarks/enhance_colorize.py",
                                     *(sys.argv[1:] if argv is None else argv)]),
              "run": str(args.run), "steps": res.steps, "train_seconds": round(train_s, 1),
              "train_images": len(images), "size": args.size, "held_out_images": len(test), **scores,
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
    if args.curves and res.history:
        plot_curves(res.history, args.curves)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
