"""How well the application tells endoscopy from dermoscopy colour pictures (``medattn.app.modality``).

Runs :func:`medattn.app.modality.guess_colour_kind` on N images of each of Kvasir-SEG, CVC-ClinicDB (endoscopy),
PH2 and ISIC 2017 (dermoscopy) and counts per dataset: called right, called the other kind (wrong: the wrong
default segmenter), undecided (``rgb``: both kinds of models are offered), and how often the lean (which picks
the default model for an undecided picture) is right. ``--part first`` takes the first N images by name (the ones
the thresholds were read from), ``--part last`` the last N (not looked at when choosing them).

    .venv/bin/python benchmarks/app_modality.py --n 100 --part last

Writes ``benchmarks/results/app_modality.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from medattn.app.modality import guess_colour_kind
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root

HERE = Path(__file__).resolve().parent
DATASETS = {  # name: (glob under the data root, truth)
    "kvasir-seg": ("kvasir-seg/images/*", "endoscopy"),
    "cvc-clinicdb": ("cvc-clinicdb/images/*", "endoscopy"),
    "ph2": ("ph2/*/*/*_Dermoscopic_Image/*.png", "dermoscopy"),
    "isic2017-seg": ("isic2017-seg/train/images/*.jpg", "dermoscopy"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="data root (default: ../shared/data or MEDATTN_DATA)")
    p.add_argument("--n", type=int, default=100, help="images per dataset")
    p.add_argument("--part", choices=("first", "last"), default="last")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p


def measure(root: Path, n: int, part: str) -> dict[str, dict[str, float]]:
    rows = {}
    for name, (pattern, truth) in DATASETS.items():
        paths = sorted(root.glob(pattern))
        paths = paths[:n] if part == "first" else paths[-n:]
        calls = [guess_colour_kind(np.asarray(Image.open(p).convert("RGB"))) for p in paths]
        other = "dermoscopy" if truth == "endoscopy" else "endoscopy"
        rows[name] = {"truth": truth, "images": len(paths),
                      "right": sum(k == truth for k, _ in calls) / len(paths),
                      "wrong": sum(k == other for k, _ in calls) / len(paths),
                      "undecided": sum(k == "rgb" for k, _ in calls) / len(paths),
                      "lean_right": sum(lean == truth for _, lean in calls) / len(paths)}
    return rows


def main() -> None:
    args = build_parser().parse_args()
    root = args.data or shared_data_root()
    rows = measure(Path(root), args.n, args.part)
    doc = {"n": args.n, "part": args.part, "datasets": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "app_modality.json", json.dumps(doc, indent=2) + "\n")
    lines = [f"Colour-picture modality guess, {args.part} {args.n} images per dataset", "",
             "| dataset | truth | images | right | wrong | undecided (rgb) | lean right |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | {r['truth']} | {r['images']} | {r['right']:.0%} | {r['wrong']:.0%} | {r['undecided']:.0%} | "
              f"{r['lean_right']:.0%} |" for k, r in rows.items()]
    atomic_write_text(args.out / "app_modality.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
