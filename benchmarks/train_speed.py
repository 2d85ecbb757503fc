"""CPU training throughput of the engine, before and after (``medattn.training.Trainer``).

For BSANet (MobileNetV2 encoder, as bundled), HLF-Net and MONAI's U-Net at 128, 192 and
256 px, each cell runs the real ``Trainer`` in its own process on Kvasir-SEG images (batch 8,
bf16 autocast, ``flip`` + ``rotate90`` augmentation, the models' own losses) and times the
steps of epochs 2 and 3 (epoch 1 is the warm-up: it fills the caches and holds the profiled
step):

* ``before``: the engine at ``--before`` (default the commit this work started from), checked
  out with ``git archive`` into a temporary folder, with the settings the bundled models were
  trained with (bf16, ``data.cache=true``, ``train.deterministic=false``);
* ``after``: this tree with ``train.channels_last``, ``optim.fused`` and ``data.cache_dir``
  (``--compile`` adds a third arm with ``train.compile``).

A step's time is the interval between two consecutive batches of the training loader inside
one epoch: forward, loss, backward, optimiser step and the next batch's loading, per-step
bookkeeping included. Images/s = timed images / timed seconds. Peak memory is the cell
process's peak resident set size (``ru_maxrss``: Python, torch and the model included).
``--profile`` adds the top operators (``torch.profiler``, self CPU time) of one BSANet step at
192 px for both arms. ::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/train_speed.py            # 18 cells
    .venv/bin/python benchmarks/train_speed.py --models bsanet --sizes 192 --profile

Writes ``benchmarks/results/train_speed.{json,md}`` (after every cell).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BEFORE_REF = "4f66edc"
MODELS: dict[str, dict[str, Any]] = {
    "bsanet": {"model": {"name": "bsanet", "options": {"encoder": "mobilenet_v2",
                                                       "encoder_options": {"normalize": "imagenet"}}},
               "loss": {"name": "structure", "aux_weights": "equal"}, "optim": {"name": "adam", "lr": 1.0e-3}},
    "hlfnet": {"model": {"name": "hlfnet"}, "loss": {"name": "dice"}, "optim": {"name": "adam", "lr": 1.0e-4}},
    "unet": {"model": {"name": "unet"}, "loss": {"name": "structure"}, "optim": {"name": "adam", "lr": 1.0e-3}},
}
ARMS: dict[str, list[str]] = {
    "before": [],
    "after": ["train.channels_last=auto", "optim.fused=true"],  # + data.cache_dir (set per run)
    "after+compile": ["train.channels_last=auto", "optim.fused=true", "train.compile=true"],
}


# --------------------------------------------------------------------------- one cell (child process)


class _TimedLoader:
    """Wraps the training DataLoader; records when each batch arrives (and profiles one step)."""

    def __init__(self, loader: Any, record: dict[str, Any], profile_step: int | None) -> None:
        self.loader, self.record, self.profile_step = loader, record, profile_step
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        stamps: list[float] = []
        self.record["epochs"].append(stamps)
        prof = None
        for batch in self.loader:
            stamps.append(time.perf_counter())
            if prof is not None:
                prof.__exit__(None, None, None)
                self.record["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
                self.record["profile_ops"] = [
                    {"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
                    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]]
                prof = None
            if len(self.record["epochs"]) == 1 and len(stamps) == self.profile_step:
                from torch.profiler import ProfilerActivity, profile

                prof = profile(activities=[ProfilerActivity.CPU])
                prof.__enter__()
            yield batch


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one (model, size, arm) cell and return its timings."""
    import torch

    torch.set_num_threads(spec["threads"])
    from medattn.training import trainer as trainer_mod
    from medattn.training.config import apply_overrides, build_config

    base = MODELS[spec["model"]]
    tree: dict[str, Any] = {
        "name": "train_speed", "model": dict(base["model"]), "loss": dict(base["loss"]), "optim": dict(base["optim"]),
        "data": {"root": spec["data"], "split": {"kind": "none", "val_ratio": 0.0},
                 "input_size": [spec["size"], spec["size"]], "augment": ["flip", "rotate90"],
                 "limit": spec["batch"] * spec["steps"], "cache": True},
        "train": {"epochs": 3, "batch_size": spec["batch"], "precision": "bf16", "deterministic": False,
                  "curves": False, "seed": 0},
    }
    apply_overrides(tree, spec["overrides"])
    cfg = build_config(tree, "train_speed")
    record: dict[str, Any] = {"epochs": []}
    original = trainer_mod.Trainer._loader

    def loader(self: Any, dataset: Any, batch: int, train: bool) -> Any:
        out = original(self, dataset, batch, train)
        return _TimedLoader(out, record, spec.get("profile_step")) if train else out

    trainer_mod.Trainer._loader = loader  # type: ignore[method-assign]
    t0 = time.perf_counter()
    result = trainer_mod.Trainer(cfg, run_dir=spec["run_dir"], progress=False).fit()
    wall = time.perf_counter() - t0
    intervals = [b - a for stamps in record["epochs"][1:] for a, b in itertools.pairwise(stamps)]
    timed = sum(intervals)
    return {
        "images_per_s": spec["batch"] * len(intervals) / timed if timed else None,
        "step_s": sorted(intervals)[len(intervals) // 2] if intervals else None,
        "timed_steps": len(intervals), "wall_s": round(wall, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_loss": [row["train_loss"] for row in result.history],
        "profile": record.get("profile"), "profile_ops": record.get("profile_ops"),
    }


# --------------------------------------------------------------------------- the driver


def checkout(ref: str, dest: Path) -> Path:
    """``git archive REF src`` unpacked into ``dest``; returns the ``src`` folder."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "src.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"CPU: {meta['cpu']}, {meta['threads']} torch thread(s), torch {meta['torch']}, {meta['date']}, load "
        f"average {meta['load_before']} before / {meta.get('load_after', '-')} after (shared machine: compare "
        f"the ratios, measured back to back, more than the absolute numbers). Batch {meta['batch']}, bf16 autocast, "
        f"Kvasir-SEG images, `flip` + `rotate90`; {meta['steps'] - 1} x 2 timed steps per cell after a "
        f"{meta['steps']}-step warm-up epoch. before = `{meta['before']}` (`data.cache=true`), after = this tree "
        "(`train.channels_last`, `optim.fused`, `data.cache_dir`). Peak memory = peak RSS of the cell's process.",
        "",
        "| model | size | arm | images/s | median step (s) | peak RSS (MB) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ips = f"{r['images_per_s']:.2f}" if r.get("images_per_s") else "-"
        step = f"{r['step_s']:.3f}" if r.get("step_s") else "-"
        rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "-"
        up = f"{r['speedup']:.2f}x" if r.get("speedup") else ("-" if "error" not in r else f"error: {r['error']}")
        lines.append(f"| {r['model']} | {r['size']} | {r['arm']} | {ips} | {step} | {rss} | {up} |")
    profiles = [r for r in rows if r.get("profile")]
    for r in profiles:
        lines += ["", f"Top operators of one {r['model']} step at {r['size']} px, {r['arm']} (torch.profiler, "
                      "self CPU time):", "", "```", r["profile"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--sizes", nargs="*", type=int, default=[128, 192, 256])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="steps per epoch (3 epochs; the first is warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (leave the other core free)")
    ap.add_argument("--before", default=BEFORE_REF, help="git ref of the 'before' engine")
    ap.add_argument("--compile", action="store_true", help="also measure train.compile=true")
    ap.add_argument("--profile", action="store_true", help="profile one BSANet step at 192 px per arm")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MEDATTN_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=RESULTS / "train_speed")
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cell:
        spec = json.loads(args.cell)
        print("CELL " + json.dumps(run_cell(spec)), flush=True)
        return 0

    import torch
    from rich.progress import Progress

    from medattn.utils.fileio import atomic_write_text

    data = (args.data / "kvasir-seg").resolve()
    if not data.is_dir():
        ap.error(f"{data}: no such folder (give --data, the shared data root)")
    arms = ["before", "after"] + (["after+compile"] if args.compile else [])
    meta = {"cpu": _cpu_name(), "threads": args.threads, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "load_before": round(os.getloadavg()[0], 1), "batch": args.batch, "steps": args.steps,
            "before": args.before, "cores": os.cpu_count()}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp_name:
        tmp = Path(tmp_name)
        src = {"before": str(checkout(args.before, tmp / "before")), "after": str(ROOT / "src")}
        cells = [(m, s, a) for m in args.models for s in args.sizes for a in arms]
        with Progress() as bar:
            task = bar.add_task("cells", total=len(cells))
            for i, (model, size, arm) in enumerate(cells):
                bar.update(task, description=f"{model} {size} px {arm}")
                overrides = list(ARMS[arm])
                if arm != "before":
                    overrides.append(f"data.cache_dir={tmp / 'cache'}")
                spec = {"model": model, "size": size, "batch": args.batch, "steps": args.steps,
                        "threads": args.threads, "data": str(data), "overrides": overrides,
                        "run_dir": str(tmp / f"run{i}"),
                        "profile_step": 3 if args.profile and model == "bsanet" and size == 192 else None}
                env = {**os.environ, "PYTHONPATH": src["before" if arm == "before" else "after"],
                       "OMP_NUM_THREADS": str(args.threads)}
                proc = subprocess.run([sys.executable, __file__, "--cell", json.dumps(spec)], env=env,
                                      capture_output=True, text=True)
                row: dict[str, Any] = {"model": model, "size": size, "arm": arm}
                out = [ln for ln in proc.stdout.splitlines() if ln.startswith("CELL ")]
                if proc.returncode or not out:
                    row["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
                else:
                    row.update(json.loads(out[-1][5:]))
                ref = next((r for r in rows if r["model"] == model and r["size"] == size and r["arm"] == "before"),
                           None)
                if ref and ref.get("images_per_s") and row.get("images_per_s") and arm != "before":
                    row["speedup"] = row["images_per_s"] / ref["images_per_s"]
                rows.append(row)
                meta["load_after"] = round(os.getloadavg()[0], 1)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(args.out.with_suffix(".json"),
                                  json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
                atomic_write_text(args.out.with_suffix(".md"), "# Training throughput\n\n" + markdown(rows, meta))
                bar.advance(task)
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
