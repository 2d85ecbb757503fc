"""Skin-lesion results of k-fold (PH2) or split (ISIC 2017) runs: Dice, Jaccard, accuracy ... mean ± std.

Each run folder trained one fold (``data.split.kind: kfold``); its ``split.json``
``val`` part is that fold's held-out images. The engine also picks
``best.safetensors`` on that part, so to keep the held-out fold unseen by any
choice this script scores the **last** epoch's weights (``--checkpoint best``
to compare). Every held-out image is predicted at its own resolution
(``medattn.inference.predict_batch``, as the card says: ``inference`` TTA and threshold, no TTA
and 0.5 without the block) and scored at ``p > threshold`` with
``medattn.metrics.segmentation_scores``; a fold's score is the mean over its
images, an arm's score the mean ± sample std (ddof 1) over its folds. Arms
are compared on the folds they share (paired differences).

Writes ``<run>/ph2_eval_<checkpoint>.json`` (cached), ``benchmarks/results/ph2_results.{json,md}``
and, with ``--overlays PNG``, image | ground truth | each arm's mask for a few fold-0 images.

Runs with a separate test part (``configs/splits/isic2017_seg.json``: validation carved from
the training images, the 150 ISIC 2017 validation pairs as test) are scored with ``--part test``
(then ``best`` is a fair choice: it was made on the validation part); runs of several seeds
of one arm give mean ± std over the runs. ``--name`` sets the output file names, and each
arm's parameter count is listed beside the paper's (``model_info(name).paper_params``)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/ph2_results.py \
        --arm "HLF-Net scratch=runs/ph2-hlfnet-scratch-f*" \
        --arm "HLF-Net + MIM pretrained LFE=runs/ph2-hlfnet-pretrained-f*" \
        --overlays docs/img/results/ph2_overlays.png
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data import load_split
from medattn.inference import load_model, predict_batch
from medattn.io import read_mask, read_rgb
from medattn.metrics import segmentation_scores
from medattn.utils.figures import save_figure_png
from medattn.utils.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from polyp_results import read_results

COLUMNS = ("dice", "iou", "accuracy", "recall", "specificity")
HEADERS = {"dice": "Dice", "iou": "Jaccard", "accuracy": "Accuracy", "recall": "Sensitivity",
           "specificity": "Specificity"}
DEFAULT_ARMS = (
    "HLF-Net, from scratch=runs/ph2-hlfnet-scratch-f*",
    "HLF-Net, LFE encoder MIM-pretrained on isic2017-unlabeled=runs/ph2-hlfnet-pretrained-f*",
    "U-Net (MONAI), from scratch=runs/ph2-unet-f*",
)


def fold_of(run: Path) -> int:
    """The fold a run trained: ``data.split.fold`` (kfold), the split file's ``meta.fold`` (file), else the seed."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    split = cfg["data"]["split"]
    if split.get("kind") == "kfold":
        return int(split["fold"])
    if split.get("kind") == "file" and split.get("file"):
        meta = json.loads(Path(split["file"]).read_text(encoding="utf-8")).get("meta", {})
        if "fold" in meta:
            return int(meta["fold"])
    return int(cfg.get("train", {}).get("seed", 0))


def evaluate_fold(run: Path, checkpoint: str, part: str = "val") -> dict[str, Any]:
    """Scores of one fold's run on its held-out images (the ``part`` of its ``split.json``)."""
    import csv

    from medattn.models import model_info

    weights = run / f"{checkpoint}.safetensors"
    lm = load_model(weights)
    parts = load_split(run / "split.json")
    if part not in parts:
        raise SystemExit(f"error: {run / 'split.json'} has no '{part}' part (parts: {', '.join(parts)})")
    samples = parts[part]
    images = {}
    for s in samples:
        prob = predict_batch(lm, [read_rgb(s.image)])[0].prob  # as the card says (inference: TTA, threshold)
        images[s.id] = segmentation_scores(prob, read_mask(s.mask), lm.threshold)
    seconds, epochs = 0.0, 0
    with (run / "history.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            seconds, epochs = seconds + float(row["seconds"]), max(epochs, int(row["epoch"]))
    card = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
    params = sum(p.numel() for p in lm.model.parameters())
    paper = model_info(lm.name).paper_params if lm.name else None
    return {"run": str(run), "fold": fold_of(run), "part": part, "model": lm.name, "params": params,
            "paper_params": paper, "in_channels": lm.in_channels, "checkpoint": checkpoint, "epoch": card.get("epoch"),
            "epochs": epochs, "train_seconds": round(seconds, 1), "input_size": card.get("input_size"),
            "inference": lm.settings(),
            "count": len(images), "mean": {k: float(np.mean([v[k] for v in images.values()])) for k in COLUMNS},
            "images": images}


def cached(run: Path, checkpoint: str, force: bool, part: str = "val") -> dict[str, Any]:
    cache = run / (f"ph2_eval_{checkpoint}.json" if part == "val" else f"eval_{part}_{checkpoint}.json")
    weights = run / f"{checkpoint}.safetensors"
    if cache.is_file() and not force and cache.stat().st_mtime > weights.stat().st_mtime:
        result = json.loads(cache.read_text(encoding="utf-8"))
        if "params" in result:  # caches of older versions lack the parameter count
            return result
    result = evaluate_fold(run, checkpoint, part)
    atomic_write_text(cache, json.dumps(result, indent=1) + "\n")
    return result


def prior_records(paths: list[Path], label: str, pattern: str, local: list[Path]) -> list[dict[str, Any]]:
    """Per-run records of arm ``label`` kept in earlier results files (``--prior``) whose run folder matches
    ``pattern`` but is not among the finished ``local`` runs (trained on another machine, or cleaned away):
    a table of several seeds can then grow one seed at a time. Each record says where it was scored."""
    have = {str(r) for r in local}
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        for rec in read_results(path, "folds", dict).get(label, []):
            run = rec.get("run", "")
            if run and run not in have and fnmatch.fnmatchcase(run, pattern):
                out[run] = {**rec, "scored_in": str(path)}
    return list(out.values())


def summarize(folds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"folds": sorted(f["fold"] for f in folds)}
    for k in COLUMNS:
        vals = np.array([f["mean"][k] for f in folds])
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else None}
    out["train_minutes_per_fold"] = float(np.mean([f["train_seconds"] for f in folds]) / 60)
    out["epochs"] = sorted({f["epochs"] for f in folds})
    out["input_size"] = folds[0]["input_size"]
    out["params"] = folds[0].get("params")
    out["paper_params"] = folds[0].get("paper_params")
    out["in_channels"] = folds[0].get("in_channels")
    return out


def _millions(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.2f} M"


def fmt(stat: dict[str, Any]) -> str:
    return f"{stat['mean']:.3f}" + (f" ± {stat['std']:.3f}" if stat["std"] is not None else "")


def finished(run: Path) -> bool:
    """Whether a training run reached the epochs its config asks for (``last.json``'s epoch): a run still
    training (or interrupted) is left out of the table instead of being scored at an early epoch."""
    import yaml

    try:
        wanted = int(yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"])
        reached = int(json.loads((run / "last.json").read_text())["epoch"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return True  # not a `medattn train` folder of the usual shape: score what is there
    return reached >= wanted


def markdown(arms: dict[str, dict[str, Any]], paired: list[dict[str, Any]], checkpoint: str,
             part: str = "val") -> str:
    lines = ["| model | folds | " + " | ".join(HEADERS[k] for k in COLUMNS)
             + " | params (paper) | input | epochs | min / fold |",
             "|---" * (len(COLUMNS) + 6) + "|"]
    for label, s in arms.items():
        size = "x".join(map(str, s["input_size"])) if s["input_size"] else "-"
        size += f", {s['in_channels']} ch" if s.get("in_channels") not in (None, 3) else ""
        params = _millions(s.get("params")) + (f" ({_millions(s['paper_params'])})" if s.get("paper_params") else "")
        lines.append(f"| {label} | {','.join(map(str, s['folds']))} | " + " | ".join(fmt(s[k]) for k in COLUMNS)
                     + f" | {params} | {size} | {','.join(map(str, s['epochs']))} | "
                     f"{s['train_minutes_per_fold']:.1f} |")
    where = "each fold's held-out images" if part == "val" else f"the '{part}' part of each run's split"
    lines += ["", f"Scores of the {checkpoint} epoch's weights on {where} (p > 0.5), "
              "mean ± sample std over folds (runs)."]
    for p in paired:
        lines.append(f"- {p['b']} minus {p['a']}, Dice on the shared folds {p['folds']}: "
                     f"{p['mean_diff']:+.3f} (per fold {', '.join(f'{d:+.3f}' for d in p['diffs'])})")
    return "\n".join(lines) + "\n"


def write_overlays(path: Path, arms: dict[str, list[dict[str, Any]]], rows: int, height: int = 150) -> None:
    """Fold-0 held-out images at spread Dice ranks of the first arm: image | GT | each arm's mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from medattn.inference.render import overlay

    runs = {label: next((f for f in folds if f["fold"] == 0 and "images" in f), None) for label, folds in arms.items()}
    runs = {k: v for k, v in runs.items() if v is not None}
    if not runs:
        return
    first = next(iter(runs.values()))
    ranked = sorted(first["images"], key=lambda i: -first["images"][i]["dice"])
    ids = [ranked[i] for i in dict.fromkeys(np.linspace(0, len(ranked) - 1, rows).round().astype(int).tolist())]
    samples = {s.id: s for s in load_split(Path(first["run"]) / "split.json")[first.get("part", "val")]}
    models = {label: load_model(Path(r["run"]) / f"{r['checkpoint']}.safetensors") for label, r in runs.items()}
    cols = 2 + len(runs)
    fig, axes = plt.subplots(len(ids), cols, figsize=(2.2 * cols, 1.8 * len(ids)), squeeze=False)
    for row, sid in enumerate(ids):
        img, gt = read_rgb(samples[sid].image), read_mask(samples[sid].mask)
        panels = [(img, sid), (overlay(img, gt), "ground truth")]
        for label, lm in models.items():
            prob = predict_batch(lm, [img])[0].prob
            short = label if len(label) <= 24 else label[:23] + "…"
            panels.append((overlay(img, prob > lm.threshold), f"{short} Dice {runs[label]['images'][sid]['dice']:.2f}"))
        for col, (a, title) in enumerate(panels):
            h, w = a.shape[:2]
            axes[row][col].imshow(np.asarray(Image.fromarray(a).resize((round(w * height / h), height))))
            axes[row][col].set_title(title, fontsize=6)
            axes[row][col].axis("off")
    fig.tight_layout(pad=0.3)
    save_figure_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", action="append", default=None,
                    help="LABEL=GLOB of one arm's fold run folders (repeatable; default: the issue-8 arms)")
    ap.add_argument("--checkpoint", choices=("last", "best"), default="last", help="weights scored in each run")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for ph2_results.*")
    ap.add_argument("--overlays", type=Path, default=None, help="write sample overlays to this PNG")
    ap.add_argument("--rows", type=int, default=4, help="overlay rows")
    ap.add_argument("--force", action="store_true", help="recompute cached per-run scores")
    ap.add_argument("--part", default="val", help="split part scored: val (k-fold) or test (ISIC 2017 split)")
    ap.add_argument("--name", default="ph2_results", help="output file names: <out>/<name>.{json,md}")
    ap.add_argument("--prior", action="append", type=Path, default=[],
                    help="an earlier results JSON of this script: its runs that are not on this disk are kept "
                         "(repeatable)")
    args = ap.parse_args()
    per_arm: dict[str, list[dict[str, Any]]] = {}
    for spec in args.arm or DEFAULT_ARMS:
        label, _, pattern = spec.rpartition("=")
        runs = [Path(p) for p in sorted(glob.glob(pattern))
                if Path(p).is_dir() and (Path(p) / f"{args.checkpoint}.safetensors").is_file() and finished(Path(p))]
        records = [cached(r, args.checkpoint, args.force, args.part) for r in runs]
        records += prior_records(args.prior, label or pattern, pattern, runs)
        if records:
            per_arm[label or pattern] = sorted(records, key=lambda f: (f["fold"], f["run"]))
    if not per_arm:
        raise SystemExit("error: no finished fold runs found for any arm")
    arms = {label: summarize(folds) for label, folds in per_arm.items()}
    labels = list(per_arm)
    paired = []
    for b in labels[1:]:
        a = labels[0]
        da = {f["fold"]: f["mean"]["dice"] for f in per_arm[a]}
        db = {f["fold"]: f["mean"]["dice"] for f in per_arm[b]}
        shared = sorted(set(da) & set(db))
        if shared:
            diffs = [db[k] - da[k] for k in shared]
            paired.append({"a": a, "b": b, "folds": shared, "diffs": diffs, "mean_diff": float(np.mean(diffs))})
    meta = {"checkpoint": args.checkpoint, "part": args.part, "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    slim = {label: [{k: v for k, v in f.items() if k != "images"} for f in folds] for label, folds in per_arm.items()}
    atomic_write_text(args.out / f"{args.name}.json",
                      json.dumps({"meta": meta, "arms": arms, "paired": paired, "folds": slim}, indent=1) + "\n")
    md = markdown(arms, paired, args.checkpoint, args.part)
    earlier = sorted({f["run"] for folds in per_arm.values() for f in folds if "scored_in" in f})
    if earlier:
        md += (f"- Scored earlier and kept from {', '.join(sorted({str(p) for p in args.prior}))} "
               f"(run folders not on this disk): {', '.join(earlier)}\n")
    atomic_write_text(args.out / f"{args.name}.md", md)
    print(md)
    if args.overlays:
        write_overlays(args.overlays, per_arm, args.rows)
        print(f"overlays: {args.overlays}")


if __name__ == "__main__":
    main()
