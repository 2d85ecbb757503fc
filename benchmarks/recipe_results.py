"""The generalisation-recipe ablation table (issue 14) from the runs of ``scripts/tables/polyp-recipe.sh``.

Every arm is trained twice, on Kvasir-SEG only (``runs/recipe-k2c-ARM``, judged on all of
CVC-ClinicDB) and on CVC-ClinicDB only (``runs/recipe-c2k-ARM``, judged on all of Kvasir-SEG):
cross-dataset proxies for unseen data. The script reads the toolbox metrics each evaluation
wrote (``runs/recipe-*-ARM-eval.json``, ``medattn evaluate --format json``; no inference here)
and tabulates, per direction, meanDice / meanIoU / S-alpha / weighted F / mean E-phi / MAE and
the Dice of ``p > 0.5``, and each arm's difference to ``full`` with a 95 % paired bootstrap
interval over the test images (per-image meanDice, paired by image id). For a leave-one-out arm
``no-X`` the element's effect is ``full`` minus ``no-X``: positive when X helps. ``full-tta`` (the
full recipe with test-time flips) is a row when its evaluation exists. Writes
``<out>/<tag>.json`` and ``<out>/<tag>.md``::

    .venv/bin/python benchmarks/recipe_results.py --runs runs --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medattn.utils.fileio import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import polyp_results

#: the two cross-dataset directions: run prefix -> (trained on, judged on)
DIRECTIONS = {"k2c": ("Kvasir-SEG", "CVC-ClinicDB"), "c2k": ("CVC-ClinicDB", "Kvasir-SEG")}
COLUMNS = ("meanDice", "meanIoU", "Sm", "wFm", "meanEm", "MAE", "dice")
ARMS = ("base", "full", "full-tta", "no-multiscale", "no-geometric", "no-photometric", "no-progressive", "no-ema")
ELEMENTS = {"no-multiscale": "multi-scale training", "no-geometric": "rotations + random resized crops",
            "no-photometric": "photometric augmentation", "no-progressive": "progressive resizing",
            "no-ema": "EMA of the weights"}


def eval_file(runs: Path, direction: str, arm: str) -> Path:
    """Where polyp-recipe.sh writes an arm's evaluation (``full-tta``: the full run with --tta)."""
    if arm == "full-tta":
        return runs / f"recipe-{direction}-full-tta-eval.json"
    return runs / f"recipe-{direction}-{arm}-eval.json"


def budget(run: Path) -> dict[str, Any]:
    """``polyp_results.run_budget`` of a run folder, with its recipe switches (empty where the folder is gone)."""
    if not (run / "config.yaml").is_file():
        return {}
    out = polyp_results.run_budget(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    return {**out, "minutes": round(out["train_seconds"] / 60, 1),
            **{k: cfg["train"].get(k) for k in ("progressive", "multi_scale", "ema")}}


def paired_bootstrap(a: dict[str, float], b: dict[str, float], n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over the images both have, and its 95 % percentile bootstrap interval."""
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("no image in common")
    diff = np.array([a[i] - b[i] for i in ids], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "low": float(lo), "high": float(hi), "images": len(ids)}


def load_arm(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    per_image = {str(row["id"]): float(row["meanDice"]) for row in doc["images"] if row.get("meanDice") is not None}
    return {"count": doc["count"], "metrics": {k: doc.get(k) for k in COLUMNS}, "per_image": per_image}


def collect(runs: Path, arms: list[str]) -> dict[str, Any]:
    """Every arm's metrics per direction, and its paired difference to ``full`` (where both exist)."""
    table: dict[str, Any] = {}
    for arm in arms:
        entry: dict[str, Any] = {}
        for direction in DIRECTIONS:
            path = eval_file(runs, direction, arm)
            if not path.is_file():
                continue
            entry[direction] = load_arm(path)
            run = runs / f"recipe-{direction}-{'full' if arm == 'full-tta' else arm}"
            entry[direction]["budget"] = budget(run)
        if entry:
            table[arm] = entry
    full = table.get("full", {})
    for arm, entry in table.items():
        for direction, res in entry.items():
            if arm != "full" and direction in full:
                res["minus_full"] = paired_bootstrap(res["per_image"], full[direction]["per_image"])
    return table


def findings(table: dict[str, Any]) -> list[str]:
    """One sentence per measured comparison, 'helps' only where the whole interval is above zero."""
    out = []
    for arm in ARMS:
        if arm not in table or arm == "full":
            continue
        # what the comparison measures, and the sign that makes "minus full" its effect
        what, sign = (("test-time flips", 1) if arm == "full-tta" else
                      ("the full recipe", -1) if arm == "base" else (ELEMENTS[arm], -1))
        for direction, (src, dst) in DIRECTIONS.items():
            d = table[arm].get(direction, {}).get("minus_full")
            if d is None:
                continue
            eff, lo, hi = sign * d["mean"], *sorted((sign * d["low"], sign * d["high"]))
            verdict = "helps" if lo > 0 else "hurts" if hi < 0 else "no clear effect"
            out.append(f"{what}, {src} -> {dst}: {verdict} (meanDice {eff:+.3f}, 95 % CI {lo:+.3f} to {hi:+.3f})")
    return out


def markdown(table: dict[str, Any], notes: list[str]) -> str:
    lines = ["# Generalisation recipe, leave-one-out ablation (issue 14): cross-dataset proxies", ""]
    for direction, (src, dst) in DIRECTIONS.items():
        rows = [(arm, table[arm][direction]) for arm in ARMS if arm in table and direction in table[arm]]
        if not rows:
            continue
        b = rows[0][1]["budget"]
        lines += [f"## Trained on {src} only, judged on all of {dst} ({rows[0][1]['count']} images)", "",
                  f"Budget (every arm): {b.get('epochs')} epochs, input {b.get('input_size')}.", "",
                  "| arm | " + " | ".join(c if c != "dice" else "Dice p>0.5" for c in COLUMNS)
                  + " | minus full (95 % CI) | minutes |",
                  "|---" * (len(COLUMNS) + 3) + "|"]
        for arm, res in rows:
            cells = [f"{res['metrics'][c]:.3f}" if res["metrics"][c] is not None else "-" for c in COLUMNS]
            d = res.get("minus_full")
            diff = f"{d['mean']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})" if d else "-"
            lines.append(f"| {arm} | " + " | ".join(cells) + f" | {diff} | {res['budget'].get('minutes', '-')} |")
        lines.append("")
    lines += ["Each element's effect is `full` minus the arm without it (per-image meanDice, paired "
              "bootstrap over the test images, 2000 resamples); 'helps' only when the whole interval is "
              "above zero.", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"), help="the folder of the recipe runs")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--tag", default="polyp_recipe_ablation")
    args = ap.parse_args(argv)
    table = collect(args.runs, args.arms)
    if not table:
        ap.error(f"no recipe evaluation found under {args.runs} (runs/recipe-*-eval.json)")
    notes = findings(table)
    doc = {"arms": {arm: {d: {k: v for k, v in res.items() if k != "per_image"} for d, res in entry.items()}
                    for arm, entry in table.items()}, "findings": notes}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"{args.tag}.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(args.out / f"{args.tag}.md", markdown(table, notes))
    print(markdown(table, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
