"""Polyp segmentation results in the PraNet format, per test set (Kvasir-100, ClinicDB-62).

For every run folder (or bundled model name) given, the model predicts each
``test*`` part of the run's split *separately* (``medattn.inference.evaluate_model``
writes 8-bit probability maps at the ground truth's size) and the PraNet
toolbox metrics are computed per part (``medattn.evaluation.evaluate_pairs``):
meanDice, meanIoU, S-alpha, weighted F, mean E-phi, MAE (the papers' columns),
plus maxDice, maxEm and Dice / IoU of the mask ``p > threshold``. Each model runs as its card
says (``inference``: TTA, threshold; no TTA and 0.5 without the block), recorded per run.

Writes ``<run>/polyp_eval.json`` (cached: recomputed only when the weights are
newer), ``benchmarks/results/polyp_results.{json,md}`` for all runs given, and
with ``--overlays PNG`` a picture of image | ground truth | each model's mask::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/polyp_results.py runs/bsanet-polyp runs/unet-polyp \
        --overlays docs/img/results/polyp_overlays.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data import load_split
from medattn.evaluation import evaluate_pairs
from medattn.inference import evaluate_model, load_model
from medattn.inference.loading import card_inference
from medattn.inference.render import overlay
from medattn.io import read_mask, read_rgb
from medattn.utils.figures import save_figure_png
from medattn.utils.fileio import atomic_write_text

#: the papers' columns, in their order (PraNet Table 1, BSANet Table 1)
PAPER_COLUMNS = ("meanDice", "meanIoU", "Sm", "wFm", "meanEm", "MAE")
EXTRA_COLUMNS = ("maxDice", "maxEm", "dice", "iou", "precision", "recall")
PART_LABELS = {"test_kvasir": "Kvasir", "test_clinicdb": "ClinicDB", "test": "test"}


def run_budget(run: Path) -> dict[str, Any]:
    """Training budget of a run folder: model, options, input size, epochs, batch, wall-clock."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    seconds, epochs = 0.0, 0
    history = run / "history.csv"
    if history.is_file():
        with history.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                seconds += float(row["seconds"])
                epochs = max(epochs, int(row["epoch"]))
    best = json.loads((run / "best.json").read_text(encoding="utf-8")) if (run / "best.json").is_file() else {}
    return {
        "model": cfg["model"]["name"],
        "options": cfg["model"].get("options", {}),
        "input_size": cfg["data"]["input_size"],
        "epochs": epochs,
        "epochs_planned": cfg["train"]["epochs"],
        "best_epoch": best.get("epoch"),
        "batch_size": cfg["train"]["batch_size"],
        "augment": cfg["data"].get("augment", []),
        "optim": cfg.get("optim", {}),
        "schedule": cfg.get("schedule", {}),
        "precision": cfg["train"].get("precision"),
        "seed": cfg["train"].get("seed"),
        "train_seconds": round(seconds, 1),
    }


def evaluate_run(run: str, data: Path, split: Path | None, workers: int | None) -> dict[str, Any]:
    """PraNet metrics of one run (folder or bundled name) on each test part of its split."""
    run_dir = Path(run)
    split = split or run_dir / "split.json"
    parts = {k: v for k, v in load_split(split).items() if k.startswith("test")}
    t0 = time.perf_counter()
    lm = load_model(run)
    with tempfile.TemporaryDirectory(prefix="polyp-eval-") as tmp:
        triples = evaluate_model(lm, data, split=split, out=tmp, progress=True)
        by_id = {t[0]: t for t in triples}
        result: dict[str, Any] = {"run": run, "split": str(split), "inference": lm.settings(), "parts": {},
                                  "images": {}}
        for part, samples in parts.items():
            pairs = [by_id[s.id] for s in samples]
            res = evaluate_pairs(pairs, name=part, pred_type="prob", workers=workers, threshold=lm.threshold)
            result["parts"][part] = {"count": res.count, **{k: float(res.mean[k]) for k in (*PAPER_COLUMNS,
                                                                                             *EXTRA_COLUMNS)}}
            result["images"][part] = {str(r["id"]): {"dice": float(r["dice"]), "meanDice": float(r["meanDice"])}
                                      for r in res.images}
    result["eval_seconds"] = round(time.perf_counter() - t0, 1)
    if run_dir.is_dir():
        result["budget"] = run_budget(run_dir)
    return result


def cached_or_evaluate(run: str, data: Path, split: Path | None, workers: int | None, force: bool) -> dict:
    run_dir = Path(run)
    cache = run_dir / "polyp_eval.json" if run_dir.is_dir() else None
    weights = run_dir / "best.safetensors"
    if cache and cache.is_file() and not force and weights.is_file() \
            and cache.stat().st_mtime > weights.stat().st_mtime:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        card = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
        settings = card_inference(card, str(weights.with_suffix(".json")))
        settings["input_size"] = settings["input_size"] or card["input_size"]
        if cached.get("split") == str(split or run_dir / "split.json") and cached.get("inference") == settings and all(
                c in m for m in cached["parts"].values() for c in (*PAPER_COLUMNS, *EXTRA_COLUMNS)):
            return cached  # else written by an older version, for another split or other settings
    result = evaluate_run(run, data, split, workers)
    if cache:
        atomic_write_text(cache, json.dumps(result, indent=1) + "\n")
    return result


def read_results(path: Path, key: str, kind: type) -> Any:
    """The ``key`` entry (a ``kind``) of an earlier results JSON of a benchmark script (``--prior``), or an
    error naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {path}: cannot read an earlier results file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise SystemExit(f"error: {path}: not a results file of this script (no '{key}' {kind.__name__})")
    return data[key]


def prior_rows(paths: list[Path], labels: set[str]) -> list[dict[str, Any]]:
    """Rows of earlier results files (``--prior``) to keep: those of a label not evaluated now whose run folder
    is not on this disk (trained on another machine, or cleaned away), each saying where it was scored; a
    later file's row of a label replaces an earlier one's."""
    kept: dict[str, dict[str, Any]] = {}
    for path in paths:
        for row in read_results(path, "results", list):
            if row.get("label") not in labels and not Path(row.get("run", "")).is_dir():
                kept[row["label"]] = {**row, "scored_in": str(path)}
    return list(kept.values())


def markdown(results: list[dict[str, Any]]) -> str:
    """One table per test part: the papers' columns, then maxDice and Dice at 0.5, then the budget."""
    lines: list[str] = []
    parts = sorted({p for r in results for p in r["parts"]}, key=lambda p: (p != "test_kvasir", p))
    for part in parts:
        rows = [r for r in results if part in r["parts"]]
        n = rows[0]["parts"][part]["count"]
        lines += [f"### {PART_LABELS.get(part, part)} ({n} images)", "",
                  "| model | " + " | ".join(PAPER_COLUMNS) + " | maxDice | Dice@0.5 | input | epochs | train time |",
                  "|---" * (len(PAPER_COLUMNS) + 6) + "|"]
        for r in rows:
            m, b = r["parts"][part], r.get("budget", {})
            size = "x".join(str(s) for s in b["input_size"]) if isinstance(b.get("input_size"), list) \
                else str(b.get("input_size", "-"))
            minutes = f"{b['train_seconds'] / 60:.0f} min" if "train_seconds" in b else "-"
            lines.append(f"| {r['label']} | " + " | ".join(f"{m[c]:.3f}" for c in PAPER_COLUMNS)
                         + f" | {m['maxDice']:.3f} | {m['dice']:.3f} | {size} | {b.get('epochs', '-')} | {minutes} |")
        lines.append("")
    return "\n".join(lines)


def pick_examples(result: dict[str, Any], per_part: int) -> list[tuple[str, str]]:
    """(part, id) of images at evenly spaced Dice ranks of the first model: best, middle, worst."""
    picks = []
    for part, images in result["images"].items():
        ranked = sorted(images, key=lambda i: -images[i]["dice"])
        idx = np.linspace(0, len(ranked) - 1, per_part).round().astype(int)
        picks += [(part, ranked[i]) for i in dict.fromkeys(idx.tolist())]
    return picks


def write_overlays(path: Path, results: list[dict[str, Any]], data: Path, per_part: int, height: int = 160) -> None:
    """Rows of image | ground truth | each model's mask (p > its card's threshold) over the image, with the Dice
    of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from medattn.inference import load_model, predict_batch

    split = load_split(results[0]["split"])
    samples = {(k, s.id): s for k, v in split.items() for s in v}
    picks = pick_examples(results[0], per_part)
    models = [load_model(r["run"]) for r in results]
    cols = 2 + len(results)
    fig, axes = plt.subplots(len(picks), cols, figsize=(2.0 * cols, 1.75 * len(picks)), squeeze=False)

    def small(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        return np.asarray(Image.fromarray(a).resize((round(w * height / h), height), Image.BILINEAR))

    for row, (part, sid) in enumerate(picks):
        s = samples[(part, sid)]
        img, gt = read_rgb(s.image), read_mask(s.mask)
        panels = [(img, f"{PART_LABELS.get(part, part)} {sid[:10]}"), (overlay(img, gt), "ground truth")]
        for lm, r in zip(models, results, strict=True):
            prob = predict_batch(lm, [img])[0].prob
            dice = r["images"][part][sid]["dice"]
            panels.append((overlay(img, prob > lm.threshold), f"{r['label']} Dice {dice:.2f}"))
        for col, (a, title) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(small(a))
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout(pad=0.3)
    save_figure_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (or bundled model names); LABEL=RUN sets the table label")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="datasets folder")
    ap.add_argument("--split", type=Path, default=None, help="split JSON (default: RUN/split.json)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for polyp_results.*")
    ap.add_argument("--overlays", type=Path, default=None, help="write sample overlays to this PNG")
    ap.add_argument("--per-part", type=int, default=3, help="overlay rows per test set")
    ap.add_argument("--workers", type=int, default=None, help="metric worker processes")
    ap.add_argument("--force", action="store_true", help="recompute even when RUN/polyp_eval.json is fresh")
    ap.add_argument("--prior", action="append", type=Path, default=[],
                    help="an earlier polyp_results.json: its rows of other labels whose run is not on this disk are "
                         "kept (repeatable)")
    args = ap.parse_args()
    results = []
    for spec in args.runs:
        label, _, run = spec.rpartition("=")
        r = cached_or_evaluate(run, args.data, args.split, args.workers, args.force)
        r["label"] = label or Path(run).name
        results.append(r)
        for part, m in r["parts"].items():
            print(f"{r['label']} {part}: " + ", ".join(f"{k} {m[k]:.3f}" for k in (*PAPER_COLUMNS, "maxDice")))
    earlier = prior_rows(args.prior, {r["label"] for r in results})
    meta = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "data": str(args.data),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    slim = [{k: v for k, v in r.items() if k != "images"} for r in results] + earlier
    atomic_write_text(args.out / "polyp_results.json", json.dumps({"meta": meta, "results": slim}, indent=1) + "\n")
    md = markdown(slim)
    if earlier:
        md += ("\nScored earlier, kept from " + ", ".join(sorted({r["scored_in"] for r in earlier}))
               + " (run folders not on this disk): " + ", ".join(f"{r['label']} ({r['run']})" for r in earlier) + "\n")
    atomic_write_text(args.out / "polyp_results.md", md)
    print(md)
    if args.overlays:  # drawn from the runs on this disk
        write_overlays(args.overlays, results, args.data, args.per_part)
        print(f"overlays: {args.overlays}")


if __name__ == "__main__":
    main()
