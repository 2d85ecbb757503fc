"""The papers' colonoscopy tables from trained runs: EFEN's Table 1/2 and BSANet's Table 1, beside the papers.

Each row is a run folder (``LABEL=RUN``) trained by ``scripts/tables/<table>.sh``. Scores come from
``benchmarks/polyp_results.py`` (the PraNet-toolbox evaluation of each ``test*`` part of the run's
split, cached in ``RUN/polyp_eval.json``); parameters, GMACs and CPU images/s from
``benchmarks/model_speed.py``'s :func:`measure` (fp32, batch 1, ``--threads`` threads, a square
``--speed-size`` input, no ONNX). Writes ``<out>/<tag>.json`` and ``<out>/<tag>.md``::

    .venv/bin/python benchmarks/paper_tables.py efen-table1 "EFEN=runs/efen-table1-efen" ...
    .venv/bin/python benchmarks/paper_tables.py bsanet-table1 "BSANet=runs/bsanet-table1-bsanet" ...

* ``efen-table1``: DSC, mIoU, recall, precision (at p > 0.5, mean over the test images; the
  paper's mIoU numbers match the foreground IoU, 78.81 for a DSC of 87.81, so that is what
  is reported) on the committed CVC-ClinicDB 8:1:1 test part (61 images);
* ``bsanet-table1``: the six PraNet-toolbox columns (meanDice, meanIoU, S-alpha, weighted F,
  mean E-phi, MAE) on Kvasir-100 and ClinicDB-62.

The papers' numbers are printed in their own rows, marked "reported": they are not measured here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import model_speed
import polyp_results
from medattn.utils.fileio import atomic_write_text

#: paper 001 (EFEN), Table 1 (ablation) and Table 2 (U-Net, EFEN rows), CVC-ClinicDB, in %
EFEN_PAPER = {
    "U-Net (baseline)": {"dice": 87.81, "iou": 78.81, "recall": 78.65, "precision": 93.29},
    "U-Net + Process1": {"dice": 91.52, "iou": 86.90, "recall": 85.43, "precision": 95.12},
    "EFEN": {"dice": 93.04, "iou": 87.25, "recall": 86.99, "precision": 95.80},
}
EFEN_COLUMNS = (("dice", "DSC"), ("iou", "mIoU"), ("recall", "Recall"), ("precision", "Precision"))

#: paper 000 (BSANet), Table 1 "Kvasir" (its own random 7:1:2 split, not PraNet's; two headers
#: garbled by OCR, read as weighted F and E-phi in PraNet's column order)
BSANET_PAPER = {
    "U-Net": (0.832, 0.739, 0.754, 0.746, 0.822, 0.072),
    "UNet++": (0.841, 0.718, 0.760, 0.870, 0.893, 0.046),
    "PraNet": (0.880, 0.865, 0.845, 0.926, 0.960, 0.034),
    "SANet": (0.882, 0.823, 0.871, 0.889, 0.954, 0.042),
    "LDNet": (0.890, 0.877, 0.866, 0.876, 0.936, 0.070),
    "BSANet": (0.901, 0.887, 0.885, 0.917, 0.973, 0.029),
}

#: budget fields that must agree between the rows of one table (everything but the model)
BUDGET_KEYS = ("input_size", "epochs", "epochs_planned", "batch_size", "augment", "optim", "schedule", "precision",
               "seed")


SPEED_KEYS = ("params", "gmacs", "cpu_images_per_s", "speed_size", "threads", "speed_errors")


def speed(run: str, size: int, threads: int) -> dict[str, Any]:
    """Parameters, GMACs (batch 1) and fp32 CPU images/s at batch 1 of the run's network."""
    import torch

    from medattn.inference import load_model

    torch.set_num_threads(threads)
    row = model_speed.measure(run, lambda: load_model(run).model, size, threads, quick=True, skip_onnx=True,
                              skip_train=True)
    return {"params": row["params"], "gmacs": row["macs"] / 1e9 if "macs" in row else None,
            "cpu_images_per_s": row.get("fp32_b1"), "speed_size": size, "threads": threads,
            "speed_errors": row.get("errors", {})}


def limited_split(run: Path, n: int) -> Path:
    """``RUN/split_test<n>.json``: the run's test parts cut to their first ``n`` images."""
    from medattn.data import load_split, save_split

    parts = {k: v[:n] for k, v in load_split(run / "split.json").items() if k.startswith("test")}
    return save_split(run / f"split_test{n}.json", parts, meta={"from": str(run / "split.json"), "test_limit": n})


def budget_mismatches(rows: list[dict[str, Any]]) -> list[str]:
    """Budget fields on which some row differs from the first (an unequal comparison)."""
    budgets = [r.get("budget", {}) for r in rows]
    return [k for k in BUDGET_KEYS if any(b.get(k) != budgets[0].get(k) for b in budgets[1:])]


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def _cost_cells(r: dict[str, Any]) -> str:
    return (f" {r['params'] / 1e6:.2f} | {_fmt(r['gmacs'], '.2f')} | {_fmt(r['cpu_images_per_s'], '.1f')} |"
            f" {r['budget'].get('epochs', '-')} | {r['budget'].get('train_seconds', 0) / 60:.0f} min |")


def efen_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    part = "test"
    n = rows[0]["parts"][part]["count"]
    head = " | ".join(c for _, c in EFEN_COLUMNS)
    lines = [f"# EFEN Table 1 / Table 2 (paper 001): CVC-ClinicDB 8:1:1 test ({n} images)", "", meta["note"], "",
             f"| row | {head} | params (M) | GMACs | CPU img/s | epochs | train time |",
             "|---" * (len(EFEN_COLUMNS) + 6) + "|"]
    for r in rows:
        m = r["parts"][part]
        lines.append(f"| {r['label']} | " + " | ".join(f"{100 * m[k]:.2f}" for k, _ in EFEN_COLUMNS) + " |"
                     + _cost_cells(r))
    for label, p in EFEN_PAPER.items():
        lines.append(f"| {label}, reported (paper 001, VGG-19 ImageNet, 300 epochs, GPU) | "
                     + " | ".join(f"{p[k]:.2f}" for k, _ in EFEN_COLUMNS) + " | | | | | |")
    return "\n".join(lines) + "\n"


def bsanet_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    cols = polyp_results.PAPER_COLUMNS
    lines = ["# BSANet Table 1 (paper 000) style: PraNet protocol", "", meta["note"], ""]
    for part in ("test_kvasir", "test_clinicdb"):
        have = [r for r in rows if part in r["parts"]]
        if not have:
            continue
        n = have[0]["parts"][part]["count"]
        lines += [f"## {polyp_results.PART_LABELS[part]} ({n} images)", "",
                  "| model | " + " | ".join(cols) + " | params (M) | GMACs | CPU img/s | epochs | train time |",
                  "|---" * (len(cols) + 6) + "|"]
        for r in have:
            m = r["parts"][part]
            lines.append(f"| {r['label']} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |" + _cost_cells(r))
        if part == "test_kvasir":
            for label, vals in BSANET_PAPER.items():
                lines.append(f"| {label}, reported (paper 000, own 7:1:2 split, GPU) | "
                             + " | ".join(f"{v:.3f}" for v in vals) + " | | | | | |")
        lines.append("")
    return "\n".join(lines)


TABLES = {"efen-table1": efen_markdown, "bsanet-table1": bsanet_markdown}

#: EFEN's ablation, in the paper's order: each row adds one part to the one before
EFEN_ORDER = ("U-Net (baseline)", "U-Net + Process1", "EFEN")
#: and the same ablation on the ImageNet MobileNetV2 (checked on its own, never across encoders)
EFEN_ORDERS = (EFEN_ORDER, ("U-Net (MobileNetV2, ImageNet)", "U-Net + Process1 (MobileNetV2, ImageNet)",
                            "EFEN (MobileNetV2, ImageNet)"))
BSANET_ABLATIONS = ("BSANet w/o ISAM", "BSANet w/o FSAM", "BSANet w/o ARM")


def checks(table: str, rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, stated on the measured rows (one sentence each, 'yes' / 'no' first).

    ``efen-table1``: does each addition of the paper's ablation raise the test DSC.
    ``bsanet-table1``: BSANet's rank by meanDice on each test set, its gap to the best row, and
    whether each BSANet module helps (BSANet against the run without it).
    """
    by_label = {r["label"]: r for r in rows}
    out = []
    if table == "efen-table1":
        for order in EFEN_ORDERS:
            have = [by_label[k] for k in order if k in by_label]
            for a, b in itertools.pairwise(have):
                da, db = a["parts"]["test"]["dice"], b["parts"]["test"]["dice"]
                out.append(f"{'yes' if db > da else 'no'}: {b['label']} "
                           f"{'improves' if db > da else 'does not improve'} "
                           f"DSC over {a['label']} ({100 * da:.2f} -> {100 * db:.2f})")
        return out
    bsanet = by_label.get("BSANet")
    for part in ("test_kvasir", "test_clinicdb"):
        have = [r for r in rows if part in r["parts"]]
        if bsanet is None or part not in bsanet["parts"] or not have:
            continue
        name = polyp_results.PART_LABELS[part]
        # the table's meanDice (PraNet toolbox: Dice averaged over 256 thresholds) decides; the Dice of
        # the p > 0.5 mask (what a user's mask gets) is stated beside it
        for key, what in (("meanDice", "meanDice"), ("dice", "Dice at p > 0.5")):
            ranked = sorted(have, key=lambda r, k=key: -r["parts"][part][k])
            best = ranked[0]
            gap = best["parts"][part][key] - bsanet["parts"][part][key]
            rank = ranked.index(bsanet) + 1
            verdict = ("yes" if gap <= 0.01 else "no") if key == "meanDice" else "(info)"
            out.append(f"{verdict}: on {name} BSANet ranks {rank} of {len(ranked)} by {what} "
                       + ("(first)" if rank == 1 else f"({gap:.3f} behind {best['label']})"))
        for label in BSANET_ABLATIONS:
            if label in by_label and part in by_label[label]["parts"]:
                d = bsanet["parts"][part]["meanDice"] - by_label[label]["parts"][part]["meanDice"]
                module = label.rsplit(" ", 1)[-1]
                out.append(f"{'yes' if d > 0 else 'no'}: on {name} {module} "
                           f"{'helps' if d > 0 else 'does not help'} (meanDice {d:+.3f} with it)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", choices=sorted(TABLES))
    ap.add_argument("runs", nargs="+", help="LABEL=RUN for every row, in table order")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="datasets folder")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--tag", default=None, help="output name (default: the table name with _ for -)")
    ap.add_argument("--speed-size", type=int, default=256, help="square input side of the speed columns")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--workers", type=int, default=1, help="metric worker processes")
    ap.add_argument("--force", action="store_true", help="re-evaluate even when RUN/polyp_eval.json is fresh")
    ap.add_argument("--speed-from", type=Path, default=None,
                    help="take each row's parameters, GMACs and images/s from this earlier results JSON (same "
                         "label) instead of measuring them again (speed is best measured once, on a quiet machine)")
    ap.add_argument("--test-limit", type=int, default=0,
                    help="score only the first N images of each test part (smoke runs; 0 = all)")
    args = ap.parse_args(argv)
    earlier, earlier_speed = {}, None
    if args.speed_from is not None:
        prior = json.loads(args.speed_from.read_text())
        earlier = {r["label"]: r for r in prior["rows"]}
        earlier_speed = prior.get("meta", {}).get("speed_note") or prior.get("meta", {}).get("note", "").partition(
            "Speed: ")[2].split(" **")[0]
    rows = []
    for spec in args.runs:
        label, sep, run = spec.partition("=")
        if not sep:
            ap.error(f"{spec!r}: expected LABEL=RUN")
        if not (Path(run) / "best.safetensors").is_file():
            ap.error(f"{run}: no best.safetensors (train the row first: scripts/run_experiments.sh {args.table})")
        split = limited_split(Path(run), args.test_limit) if args.test_limit else None
        r = polyp_results.cached_or_evaluate(run, args.data, split, args.workers, args.force)
        r = {k: v for k, v in r.items() if k != "images"}
        if label in earlier:
            r.update(label=label, **{k: earlier[label][k] for k in SPEED_KEYS if k in earlier[label]})
        else:
            r.update(label=label, **speed(run, args.speed_size, args.threads))
        rows.append(r)
        print(f"{label}: " + ", ".join(f"{p} dice {m['dice']:.3f}" for p, m in r["parts"].items()), flush=True)
    mismatch = budget_mismatches(rows)
    b = rows[0].get("budget", {})
    speed_note = earlier_speed if earlier_speed and all(r["label"] in earlier for r in rows) else (
        f"fp32, batch 1, {args.speed_size} x {args.speed_size}, {args.threads} thread(s), "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}.")
    note = (f"Budget (every row): {b.get('input_size')} input, {b.get('epochs')} epochs, batch {b.get('batch_size')}, "
            f"optimiser {b.get('optim', {}).get('name')} lr {b.get('optim', {}).get('lr')}, "
            f"schedule {b.get('schedule', {}).get('name')}, seed {b.get('seed')}. Speed: {speed_note}")
    if mismatch:
        note += f" **Budgets differ between rows in: {', '.join(mismatch)}** (not an equal comparison)."
    found = checks(args.table, rows)
    meta = {"table": args.table, "note": note, "speed_note": speed_note, "budget_mismatch": mismatch, "checks": found,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "data": str(args.data)}
    paper = EFEN_PAPER if args.table == "efen-table1" else {
        k: dict(zip(polyp_results.PAPER_COLUMNS, v, strict=True)) for k, v in BSANET_PAPER.items()}
    tag = args.tag or args.table.replace("-", "_")
    atomic_write_text(args.out / f"{tag}.json",
                      json.dumps({"meta": meta, "rows": rows, "paper": paper}, indent=1) + "\n")
    md = TABLES[args.table](rows, meta)
    if found:
        md += "\n## Checks against the targets\n\n" + "".join(f"- {c}\n" for c in found)
    atomic_write_text(args.out / f"{tag}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
