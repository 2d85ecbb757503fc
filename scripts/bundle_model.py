"""Ship a trained run's weights with the package: ``src/medattn/weights/<name>.safetensors`` + card.

    .venv/bin/python scripts/bundle_model.py runs/polyp-bsanet bsanet-polyp
    .venv/bin/python scripts/bundle_model.py runs/ph2-hlfnet-pretrained-f0 hlfnet-skin --checkpoint last

The card (``<name>.json``) holds the model, its options (options naming files outside the
package, such as ``encoder_pretrained``, are set to None: the trained weights replace
them), task, input size, data, split, epochs, wall-clock, hardware, the test metrics
written by ``benchmarks/polyp_results.py`` / ``benchmarks/ph2_results.py`` (never the
validation scores), the command that trained the run (from ``runs/queue.log``), the
version and the SHA-256 of the weights. Weights are stored in fp32 unless ``--fp16`` is
given and the test metrics are unchanged. The bundle is then checked in a fresh Python
process: ``medattn.inference.load_model(name)`` must predict what the run's checkpoint
predicts on ``samples/kvasir`` (max abs difference of the probabilities <= 1e-5).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from medattn.inference import load_model
from medattn.models.hub import WEIGHTS_DIR, save_bundled
from medattn.utils.fileio import atomic_write_text

#: builder options that name files outside the package; the trained weights replace them
FILE_OPTIONS = ("encoder_pretrained", "swin_pretrained", "pretrained_encoder", "mae", "pretrained")
HARDWARE = "2-core CPU, no GPU"
MAX_MB = 30.0

CHECK = """
import json, sys, numpy as np
from medattn.inference import load_model, predict_batch
from medattn.io import read_rgb
from pathlib import Path
name, ref = sys.argv[1], sys.argv[2]
imgs = [read_rgb(p) for p in sorted(Path("samples/kvasir/images").iterdir())]
a = predict_batch(load_model(name), imgs)
b = predict_batch(load_model(ref), imgs)
print(json.dumps(max(float(np.abs(x.prob - y.prob).max()) for x, y in zip(a, b))))
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def train_command(run: Path) -> str | None:
    """The `medattn train` command line the queue logged for this run (runs/queue.log)."""
    log = run.parent / "queue.log"
    if not log.is_file():
        return None
    found = None
    for line in log.read_text(encoding="utf-8").splitlines():
        marker = f"start {run.name}: "
        if marker in line:
            found = line.split(marker, 1)[1].strip()
    if found and "'" not in found and "\\" not in found:
        # the queue logged the words unquoted: quote each --set value so the line can be pasted
        head, *sets = found.split(" --set ")
        found = " --set ".join([head, *(shlex.quote(v) for v in sets)])
    return found


def test_metrics(run: Path, checkpoint: str) -> dict[str, Any]:
    """Test-set metrics of the run from the evaluation scripts' caches."""
    polyp = run / "polyp_eval.json"
    if polyp.is_file():
        doc = json.loads(polyp.read_text(encoding="utf-8"))
        return {"source": f"benchmarks/polyp_results.py {run}", "checkpoint": "best",
                "test": {part: {k: round(v, 4) for k, v in m.items()} for part, m in doc["parts"].items()}}
    ph2 = run / f"ph2_eval_{checkpoint}.json"
    if ph2.is_file():
        doc = json.loads(ph2.read_text(encoding="utf-8"))
        out: dict[str, Any] = {"source": "benchmarks/ph2_results.py", "checkpoint": checkpoint,
                               "held_out_fold": doc["fold"], "held_out_images": doc["count"],
                               "test": {k: round(v, 4) for k, v in doc["mean"].items()}}
        summary = Path("benchmarks/results/ph2_results.json")
        if summary.is_file():
            arms = json.loads(summary.read_text(encoding="utf-8"))
            for label, folds in arms["folds"].items():
                if any(Path(f["run"]).resolve() == run.resolve() for f in folds):
                    out["cross_validation"] = {"arm": label, **arms["arms"][label]}
        return out
    raise SystemExit(f"error: {run}: no polyp_eval.json or ph2_eval_{checkpoint}.json; run the evaluation first")


def rel(path: str | Path) -> str:
    """A path relative to the repository root when it lies inside it or beside it (../shared)."""
    import os

    r = os.path.relpath(Path(path).resolve(), Path.cwd())
    return r if not r.startswith("../..") else str(path)


def describe_split(run: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Counts per part; for a k-fold run also the held-out (``val``) image ids, so the card's
    held-out metrics can be recomputed without the run folder."""
    doc = json.loads((run / "split.json").read_text(encoding="utf-8"))
    out = {"counts": doc.get("counts"), "meta": doc.get("meta"), "file": rel(run / "split.json")}
    if cfg["data"]["split"]["kind"] == "kfold":
        out["held_out_ids"] = [s["id"] for s in doc["splits"]["val"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run folder of `medattn train`")
    ap.add_argument("name", help="bundled name, e.g. bsanet-polyp")
    ap.add_argument("--checkpoint", choices=("best", "last"), default="best")
    ap.add_argument("--fp16", action="store_true", help="store weights as float16 (check the metrics!)")
    ap.add_argument("--folder", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--summary", default="", help="one line shown by `medattn models`")
    args = ap.parse_args()

    run = args.run
    lm = load_model(run / f"{args.checkpoint}.safetensors")
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    run_card = json.loads((run / f"{args.checkpoint}.json").read_text(encoding="utf-8"))
    options = {k: (None if k in FILE_OPTIONS else v) for k, v in run_card["options"].items()}
    model = lm.model
    if args.fp16:
        model = model.half()
    seconds, epochs = 0.0, 0
    with (run / "history.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            seconds, epochs = seconds + float(row["seconds"]), max(epochs, int(row["epoch"]))
    card = {
        "model": run_card["model"],
        "task": run_card.get("task", "segmentation"),
        "input_size": run_card["input_size"],
        "data": {"root": [rel(r) for r in cfg["data"]["root"]], "split": cfg["data"]["split"], "augment": cfg["data"]["augment"],
                 "in_channels": cfg["data"]["in_channels"]},
        "split": describe_split(run, cfg),
        "summary": args.summary,
        "epochs": epochs,
        "checkpoint": {"tag": args.checkpoint, "epoch": run_card.get("epoch"),
                       "selected_on": "val_dice (validation part of the split)" if args.checkpoint == "best"
                       else "none (last epoch)"},
        "training": {"optim": cfg["optim"], "schedule": cfg["schedule"], "loss": cfg["loss"],
                     "batch_size": cfg["train"]["batch_size"], "precision": cfg["train"]["precision"],
                     "seed": cfg["train"]["seed"], "initial_options": cfg["model"]["options"]},
        "wall_clock_seconds": round(seconds, 1),
        "hardware": f"{HARDWARE} ({platform.processor() or platform.machine()}, shared with other jobs)",
        "metrics": test_metrics(run, args.checkpoint),
        "command": train_command(run),
        "bundled_with": f"python scripts/bundle_model.py {run} {args.name} --checkpoint {args.checkpoint}"
                        + (" --fp16" if args.fp16 else ""),
        "pretraining_commands": {k: train_command(Path(v).parent) for k, v in cfg["model"]["options"].items()
                                 if k in FILE_OPTIONS and isinstance(v, str) and train_command(Path(v).parent)},
        "dtype": "float16" if args.fp16 else "float32",
        "version": f"{args.name}@{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
        "trained_from": rel(run),
    }
    path = save_bundled(model, args.name, options, card, folder=args.folder)
    card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    card["sha256"] = sha256(path)
    atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=2, sort_keys=True) + "\n")
    size_mb = path.stat().st_size / 2**20
    print(f"{path}: {size_mb:.1f} MB, sha256 {card['sha256'][:16]}...")
    if size_mb > MAX_MB:
        raise SystemExit(f"error: {path} is {size_mb:.1f} MB (limit {MAX_MB} MB); try --fp16")
    if args.folder.resolve() == WEIGHTS_DIR.resolve():
        out = subprocess.run([sys.executable, "-c", CHECK, args.name, str(run / f"{args.checkpoint}.safetensors")],
                             capture_output=True, text=True, check=True)
        diff = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"fresh-process check: max |p_bundled - p_run| on samples/kvasir = {diff:.2e}")
        if diff > (2e-3 if args.fp16 else 1e-5):
            raise SystemExit("error: the bundled model does not reproduce the run's predictions")


if __name__ == "__main__":
    main()
