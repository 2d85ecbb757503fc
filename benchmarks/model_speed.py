"""CPU speed of every model in the zoo: parameters, MACs, inference and training throughput.

For each model (default options, 3 input channels, 256x256):

* parameters and MACs (``torch.utils.flop_counter.FlopCounterMode``, MACs = FLOPs / 2, batch 1);
* inference images/second at batch 1 and 8 in fp32, under bf16 autocast and
  through ONNX Runtime (CPU provider, ``--threads`` intra-op threads);
* training seconds/iteration at batch 8 with bf16 autocast (forward, BCE
  loss over all deep-supervision outputs, backward, AdamW step).

MONAI's ``UNet`` and ``SwinUNETR`` (2-D, ``feature_size=24``: 6.3M parameters,
the size of BSANet) are measured in the same run as reference rows.

Writes ``benchmarks/results/model_speed.{json,md}`` and the table in
``docs/models.md`` (between the ``speed-table`` markers)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/model_speed.py --quick
    .venv/bin/python benchmarks/model_speed.py --models bsanet unet monai_swinunetr
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "models.md"
BEGIN, END = "<!-- speed-table:begin -->", "<!-- speed-table:end -->"


class _Reference(nn.Module):
    """A raw MONAI network with the zoo's attributes, for the reference rows."""

    def __init__(self, net: nn.Module, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        self.net, self.in_channels, self.num_classes = net, in_channels, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _references() -> dict[str, Callable[[], nn.Module]]:
    from monai.networks import nets

    return {
        "monai_unet": lambda: _Reference(nets.UNet(2, 3, 1, channels=(32, 64, 128, 256, 512),
                                                   strides=(2, 2, 2, 2), num_res_units=2)),
        "monai_swinunetr": lambda: _Reference(nets.SwinUNETR(in_channels=3, out_channels=1, feature_size=24,
                                                             spatial_dims=2)),
    }


def _time(fn: Callable[[], Any], min_time: float, min_iters: int, warmup: int) -> float:
    """Median seconds per call after ``warmup`` calls; runs at least ``min_iters`` and ``min_time`` s."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return statistics.median(times)


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (list, tuple)) else out


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() // 2


def _onnx_rates(model: nn.Module, size: int, batches: tuple[int, ...], threads: int, timing: dict) -> dict:
    from medattn.models.export import export_onnx, max_abs_difference, onnx_session

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, size=(size, size), in_channels=model.in_channels, dynamic_batch=True)
        out["onnx_max_abs_diff"] = max_abs_difference(model, path, batch_size=2)
        sess = onnx_session(path, threads=threads)
        name = sess.get_inputs()[0].name
        for b in batches:
            x = torch.rand(b, model.in_channels, size, size).numpy()
            out[f"onnx_b{b}"] = b / _time(lambda x=x: sess.run(None, {name: x}), **timing)
    return out


def measure(name: str, build: Callable[[], nn.Module], size: int, threads: int, quick: bool,
            skip_onnx: bool = False, skip_train: bool = False) -> dict[str, Any]:
    """All numbers for one model; a failing measurement is recorded as an error string."""
    timing = {"min_time": 0.5 if quick else 2.0, "min_iters": 2 if quick else 5, "warmup": 1 if quick else 2}
    batches = (1, 8)
    torch.manual_seed(0)
    model = build().eval()
    row: dict[str, Any] = {"name": name, "params": sum(p.numel() for p in model.parameters()), "errors": {}}
    c = getattr(model, "in_channels", 3)
    x1 = torch.rand(1, c, size, size)

    def attempt(key: str, fn: Callable[[], Any]) -> None:
        try:
            res = fn()
            if isinstance(res, dict):
                row.update(res)
            else:
                row[key] = res
        except Exception as exc:  # one broken path must not hide the others
            row["errors"][key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"

    attempt("macs", lambda: _macs(model, x1))
    for b in batches:
        xb = torch.rand(b, c, size, size)

        def fp32(xb=xb) -> None:
            with torch.inference_mode():
                model(xb)

        def bf16(xb=xb) -> None:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(xb)

        attempt(f"fp32_b{b}", lambda fp32=fp32, b=b: b / _time(fp32, **timing))
        attempt(f"bf16_b{b}", lambda bf16=bf16, b=b: b / _time(bf16, **timing))
    if not skip_onnx:
        attempt("onnx", lambda: _onnx_rates(model, size, batches, threads, timing))
    if not skip_train:
        attempt("train_bf16_b8", lambda: _train_step_time(model, c, size, timing))
    fastest = {k: row[k] for k in ("fp32_b1", "bf16_b1", "onnx_b1") if isinstance(row.get(k), float)}
    if fastest:
        best = max(fastest, key=fastest.get)
        row["fastest_b1"], row["fastest_b1_path"] = fastest[best], best.removesuffix("_b1")
    return row


def _train_step_time(model: nn.Module, c: int, size: int, timing: dict) -> float:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.rand(8, c, size, size)
    y = (torch.rand(8, 1, size, size) > 0.5).float()
    n_cls = getattr(model, "num_classes", 1)
    if n_cls != 1:
        y = y.expand(-1, n_cls, -1, -1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            outs = out if isinstance(out, (list, tuple)) else [out]
            loss = sum(nn.functional.binary_cross_entropy_with_logits(o.float(), y) for o in outs)
        loss.backward()
        opt.step()

    t = _time(step, **{**timing, "min_iters": max(2, timing["min_iters"] // 2)})
    model.eval()
    return t


# -- reporting ---------------------------------------------------------------------------------

def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def markdown_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = ("| model | params (M) | GMACs | fp32 b1 | fp32 b8 | bf16 b1 | bf16 b8 | ORT b1 | ORT b8 "
            "| train bf16 b8 (s/it) | fastest b1 |")
    lines = [
        f"CPU: {meta['cpu']} ({meta['threads']} threads), torch {meta['torch']}, onnxruntime "
        f"{meta['onnxruntime']}, input {meta['size']}x{meta['size']}x3, {meta['date']}, load average before "
        f"the run {meta['load_before']}{', quick mode' if meta['quick'] else ''}. Throughput in images/second "
        "(higher is better); training in seconds per iteration (lower is better).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        fast = f"{_fmt(r.get('fastest_b1'), '.1f')} ({r['fastest_b1_path']})" if "fastest_b1" in r else "-"
        lines.append(
            f"| {r['name']} | {r['params'] / 1e6:.2f} | {_fmt(r['macs'] / 1e9 if 'macs' in r else None, '.2f')} "
            f"| {_fmt(r.get('fp32_b1'), '.1f')} | {_fmt(r.get('fp32_b8'), '.1f')} "
            f"| {_fmt(r.get('bf16_b1'), '.1f')} | {_fmt(r.get('bf16_b8'), '.1f')} "
            f"| {_fmt(r.get('onnx_b1'), '.1f')} | {_fmt(r.get('onnx_b8'), '.1f')} "
            f"| {_fmt(r.get('train_bf16_b8'), '.2f')} | {fast} |"
        )
    errors = [(r["name"], k, e) for r in rows for k, e in r.get("errors", {}).items()]
    if errors:
        lines += ["", "Measurements that failed:", ""]
        lines += [f"- {n} / {k}: `{e}`" for n, k, e in errors]
    return "\n".join(lines) + "\n"


def _write_doc(table: str) -> None:
    from medattn.utils.fileio import atomic_write_text

    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# Models\n\n## Speed\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n## Speed\n\n{BEGIN}\n{END}\n"
    pre, rest = text.split(BEGIN, 1)
    post = rest.split(END, 1)[1]
    atomic_write_text(DOC, f"{pre}{BEGIN}\n{table}{END}{post}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None,
                    help="names or globs (default: every segmentation model plus the MONAI references)")
    ap.add_argument("--quick", action="store_true", help="short timing windows (numbers are noisier)")
    ap.add_argument("--size", type=int, default=256, help="input height and width")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime columns")
    ap.add_argument("--no-train", action="store_true", help="skip the training column")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/models.md")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    from rich.progress import Progress

    from medattn.models import create, list_models

    refs = _references()
    available = {n: (lambda n=n: create(n)) for n in list_models(task="segmentation")}
    available.update(refs)
    patterns = args.models or list(available)
    names = [n for n in available if any(fnmatch.fnmatch(n, p) for p in patterns)]
    missing = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in available)]
    if missing:
        print(f"not in the zoo (skipped): {', '.join(missing)}")

    import onnxruntime

    meta = {
        "cpu": _cpu_name(), "threads": args.threads, "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "size": args.size, "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"), "load_before": round(os.getloadavg()[0], 1), "cores": os.cpu_count(),
    }
    from medattn.utils.fileio import atomic_write_text

    def save(rows: list[dict[str, Any]]) -> str:
        # written after every model: a run stopped half-way keeps what it measured
        meta["load_after"] = round(os.getloadavg()[0], 1)
        table = markdown_table(rows, meta)
        atomic_write_text(RESULTS / "model_speed.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        atomic_write_text(RESULTS / "model_speed.md", "# Model speed\n\n" + table)
        if not args.no_doc:
            _write_doc(table)
        return table

    rows: list[dict[str, Any]] = []
    table = ""
    with Progress() as progress:
        task = progress.add_task("measuring", total=len(names))
        for n in names:
            progress.update(task, description=f"measuring {n}")
            rows.append(measure(n, available[n], args.size, args.threads, args.quick, args.no_onnx, args.no_train))
            table = save(rows)
            progress.advance(task)
    print(table)
    for r in rows:
        if r["name"] == "bsanet" and "fastest_b1" in r:
            swin = next((s for s in rows if s["name"] == "monai_swinunetr" and "fastest_b1" in s), None)
            ratio = f", {swin['fastest_b1'] / r['fastest_b1']:.2f}x the time of SwinUNETR" if swin else ""
            print(f"BSANet batch 1: {r['fastest_b1']:.1f} images/s via {r['fastest_b1_path']} (target >= 8){ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
