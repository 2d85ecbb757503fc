"""LDCT results table: input vs BM3D vs the trained denoisers, on simulated or on real low-dose slices.

    python benchmarks/ldct_eval.py --run cadn_small=runs/ldct/cadn_small/best.safetensors \\
        --run redcnn48=runs/ldct/redcnn48/best.safetensors --run dncnn=runs/ldct/dncnn/best.safetensors
    python benchmarks/ldct_eval.py --real ../shared/data/ct/mayo-l506-real --out benchmarks/results/ldct_real \\
        --panels docs/img/ldct_real_crops.png --run cadn-ldct=src/medattn/weights/cadn-ldct.safetensors

Simulated (default): the held-out TotalSegmentator slices at ``--dose``. Real (``--real DIR``):
the AAPM/Mayo quarter-dose slices against their full-dose slices (``*_quarter_hu.npy`` /
``*_full_hu.npy``, pixel size ``--spacing``). Networks run as ``medattn denoise`` runs them
(:class:`medattn.denoise.apply.Denoiser`: a slice off the model's trained grid is resampled to
it and back; ``--native`` turns that off to measure what it brings; each keeps the share of the
estimated noise its card says, ``--keep-noise`` or ``label=path@K`` set it, and runs as an 8-fold
self-ensemble where its card says ``inference.tta`` or the run ends in ``@tta`` / ``@K,tta``;
``@notta`` turns it off). ``rmse_body_hu`` is
the RMSE inside the body (normal-dose slice above -500 HU, holes filled).

Writes ``benchmarks/results/ldct_eval.json`` and ``.md`` and the picture panels
``docs/img/ldct_panels.png``. PSNR / SSIM are computed in the abdominal HU window
40/400 (both images clipped to [-160, 240] HU, data range 400), RMSE in HU over the
whole slice (no window). Seconds per slice are wall-clock on this machine (CPU,
one thread unless --threads), including the HU <-> network conversion. Each network's
summary row records its weights file (``weights.path`` as given, ``weights.sha256``),
so a model card can be matched to its row: ``scripts/bundle_model.py`` pairs bundled
weights with their row by SHA-256 and copies ``per_slice``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

WINDOW = (40.0, 400.0)


def model_cost(model, size: int = 512, probe: int = 128) -> tuple[int, float]:
    """(parameters, GMACs for one size x size slice) via torch's FLOP counter (MACs = FLOPs / 2).

    Counted on a ``probe`` x ``probe`` input and scaled by the pixel ratio: the denoisers are fully
    convolutional, so their cost is linear in the pixel count.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, probe, probe))
    return params, counter.get_total_flops() / 2e9 * (size / probe) ** 2


def main(argv: list[str] | None = None) -> int:
    import torch

    from medattn.denoise.apply import (
        Denoiser,
        bm3d_denoise,
        card_grid,
        card_keep_noise,
        card_tta,
        torch_denoiser,
    )
    from medattn.denoise.data import LDCTPairs, RealLDCTPairs, SimulationSettings, collection
    from medattn.metrics import psnr, rmse_hu, ssim
    from medattn.models.hub import load_model_file, model_card
    from medattn.utils.fileio import atomic_write_text, file_sha256

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], help="label=weights.safetensors (repeatable)")
    ap.add_argument("--dose", type=float, default=0.25)
    ap.add_argument("--slices", type=int, default=None, help="evaluate only the first N held-out slices")
    ap.add_argument("--step", type=int, default=1, help="use every n-th held-out slice")
    ap.add_argument("--z", default=None, help="comma-separated slice indices of the held-out series to use")
    ap.add_argument("--no-bm3d", action="store_true")
    ap.add_argument("--merge", action="append", default=[],
                    help="add the methods of an earlier result JSON (same slices; repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--real", type=Path, default=None, help="folder of real quarter/full-dose pairs to evaluate on")
    ap.add_argument("--spacing", type=float, default=0.7421875, help="pixel size (mm) of the --real pairs")
    ap.add_argument("--bm3d-oracle", action="store_true",
                    help="--real only: also BM3D given the true noise SD (from quarter - full in soft tissue, x sqrt(4/3) "
                         "for the whole quarter-dose noise): the best BM3D can do with a white-noise model")
    ap.add_argument("--native", action="store_true", help="run networks on the slices' own grid (no resampling)")
    ap.add_argument("--keep-noise", type=float, default=None,
                    help="share of the estimated noise the networks keep (default: each card's inference.keep_noise, "
                         "else 0); a label=path run may end in @K to set it for that row alone")
    ap.add_argument("--out", default="benchmarks/results/ldct_eval")
    ap.add_argument("--panels", default="docs/img/ldct_panels.png")
    ap.add_argument("--panel-slice", type=int, default=None, help="index (in the evaluated list) of the panel slice")
    ap.add_argument("--crop", default=None, help="panel crop 'y,x,size' in pixels (default: the central half)")
    ap.add_argument("--curves", default=None, help="plot each run's validation curve (its history.csv) here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.real is not None:
        pairs: Any = RealLDCTPairs(args.real, args.spacing)
        spacing = (args.spacing, args.spacing)
        source, dose = str(args.real), "real"
    else:
        vols = collection(["test"])
        if not vols:
            raise SystemExit("the held-out CT (../shared/data/ct/totalsegmentator-example/dicom) is not available")
        pairs = LDCTPairs(vols, "slice", SimulationSettings(dose=args.dose), cache_dir="runs/ldct_cache")
        spacing, source, dose = vols[0].spacing, vols[0].source, args.dose
    idx = list(range(0, len(pairs), args.step))[: args.slices]
    if args.z and args.real is None:
        wanted = {int(z) for z in args.z.split(",")}
        idx = [i for i in range(len(pairs)) if pairs.index[i][1] in wanted]
    methods: dict[str, Any] = {"low-dose input": lambda hu: hu}
    costs: dict[str, dict[str, Any]] = {}
    if not args.no_bm3d:
        methods["BM3D"] = bm3d_denoise
    if args.bm3d_oracle and args.real is not None:
        from medattn.denoise.noise import soft_tissue_mask

        def bm3d_oracle(hu: np.ndarray) -> np.ndarray:
            clean = current["clean"]
            sigma = float((hu - clean)[soft_tissue_mask(clean)].std()) * np.sqrt(4.0 / 3.0)
            return bm3d_denoise(hu, sigma_hu=sigma)

        methods["BM3D (oracle noise SD)"] = bm3d_oracle
    current: dict[str, np.ndarray] = {}
    for spec in args.run:
        label, _, path = spec.partition("=")
        path, _, extra = path.partition("@")  # @K, @tta, @K,tta, @K,notta
        flags = [f.strip() for f in extra.split(",") if f.strip()]
        keep_text = next((f for f in flags if f not in ("tta", "notta")), "")
        model = load_model_file(path).eval()
        params, gmacs = model_cost(model)
        card = model_card(path) if path.endswith(".safetensors") else {}
        grid = None if args.native else card_grid(card)
        keep = float(keep_text) if keep_text else (args.keep_noise if args.keep_noise is not None
                                                    else card_keep_noise(card))
        tta = "tta" in flags or ("notta" not in flags and card_tta(card))
        costs[label] = {"params": params, "gmacs_512": round(gmacs, 1) * (8 if tta else 1), "trained_grid_mm": grid,
                        "keep_noise": keep, "tta": tta,
                        "weights": {"path": Path(path).as_posix(), "sha256": file_sha256(path)}}
        den = Denoiser(torch_denoiser(model, tta=tta), label, grid, keep)
        methods[label] = lambda hu, den=den: den(hu, spacing)

    rows: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    panel_at = args.panel_slice if args.panel_slice is not None else len(idx) // 2
    panel: dict[str, np.ndarray] = {}
    for n, i in enumerate(idx):
        low, clean, sid = pairs.pair(i)
        current["clean"] = clean
        body = body_mask(clean)
        for name, fn in methods.items():
            t = time.perf_counter()
            out = fn(low)
            sec = time.perf_counter() - t
            rows[name].append({"id": sid, "psnr": psnr(out, clean, window=WINDOW), "ssim": ssim(out, clean, window=WINDOW),
                               "rmse_hu": rmse_hu(out, clean), "rmse_body_hu": rmse_hu(out[body], clean[body]),
                               "seconds": sec})
            if n == panel_at:
                panel[name] = out
        if n == panel_at:
            panel["normal dose (target)"] = clean
        print(sid, {m: round(r[-1]["psnr"], 2) for m, r in rows.items()}, flush=True)

    for merge in args.merge:
        earlier = json.loads(Path(merge).read_text(encoding="utf-8"))
        ids = [r["id"] for r in rows["low-dose input"]]
        for name, r in earlier["per_slice"].items():
            if name not in rows:
                if [x["id"] for x in r] != ids:
                    raise SystemExit(f"{merge}: {name} was measured on other slices")
                rows[name] = r
                prior = earlier["summary"].get(name, {})
                costs[name] = {k: prior[k] for k in ("params", "gmacs_512", "weights") if k in prior}
    if args.merge:
        if "BM3D" in rows and "BM3D" not in panel and panel:
            panel["BM3D"] = bm3d_denoise(pairs.pair(idx[panel_at])[0])
        # keep the table order: input, BM3D rows, then the networks
        rows = dict(sorted(rows.items(), key=lambda kv: (kv[0] != "low-dose input", not kv[0].startswith("BM3D"))))
    summary = {}
    for name, r in rows.items():
        keys = [k for k in ("psnr", "ssim", "rmse_hu", "rmse_body_hu", "seconds") if all(k in x for x in r)]
        summary[name] = {k: float(np.mean([x[k] for x in r])) for k in keys}
        summary[name].update(costs.get(name, {}))
    result = {
        "dose": dose, "window": {"center": WINDOW[0], "width": WINDOW[1]}, "slices": [pairs.pair(i)[2] for i in idx],
        "test_volume": source, "spacing_mm": list(spacing), "resampling": "off (--native)" if args.native else
        "networks run on their trained grid (medattn.denoise.apply.Denoiser)", "summary": summary, "per_slice": rows,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__},
    }
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    base = summary["low-dose input"]["psnr"]
    what = (f"{len(idx)} real quarter-dose slices of `{Path(source).name}` ({args.spacing:g} mm pixels) against "
            "their full-dose slices" if args.real is not None else
            f"Held-out: {len(idx)} full 512x512 slices of `{Path(source).name}` at a simulated {args.dose:.0%} dose")
    lines = [f"{what}. PSNR/SSIM in the HU window {WINDOW[0]:g}/{WINDOW[1]:g} ([-160, 240] HU); "
             "RMSE in HU over the whole slice and inside the body.", "",
             "| method | params | GMACs / 512² slice | PSNR (dB) | ΔPSNR | SSIM | RMSE (HU) | RMSE body (HU) | s / slice |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        params = f"{s['params'] / 1e6:.2f} M" if "params" in s else "-"
        macs = f"{s['gmacs_512']:.1f}" if "gmacs_512" in s else "-"
        body = f"{s['rmse_body_hu']:.1f}" if "rmse_body_hu" in s else "-"
        lines.append(f"| {name} | {params} | {macs} | {s['psnr']:.2f} | {s['psnr'] - base:+.2f} | {s['ssim']:.4f} | "
                     f"{s['rmse_hu']:.1f} | {body} | {s['seconds']:.2f} |")
    ids = [r["id"] for r in rows["low-dose input"]]
    lines += ["", "Per slice, PSNR (dB) / SSIM:", "", "| method | " + " | ".join(ids) + " |",
              "|---|" + "---|" * len(ids)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{x['psnr']:.2f} / {x['ssim']:.3f}" for x in r) + " |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.curves:
        histories: dict[str, Path] = {}
        for spec in args.run:  # one curve per run folder (rows that differ only in @K share it)
            label, _, path = spec.partition("=")
            hist = Path(path.partition("@")[0]).parent / "history.csv"
            if hist not in histories.values():
                histories[label.split(",")[0]] = hist
        save_curves(histories, Path(args.curves))
    if panel:
        crop = None
        if args.crop:
            y, x, n = (int(v) for v in args.crop.split(","))
            crop = (slice(y, y + n), slice(x, x + n))
        save_panels(panel, Path(args.panels), crop, title=f"{result['slices'][panel_at]}")
    return 0


def save_curves(histories: dict[str, Path], path: Path) -> None:
    """Validation PSNR (and training loss) per epoch of each run that has a ``history.csv``."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.utils.figures import save_figure_png

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, hist in histories.items():
        if not hist.is_file():
            continue
        rows = list(csv.DictReader(hist.open(encoding="utf-8")))
        epochs = [int(r["epoch"]) for r in rows]
        if rows and "val_psnr" in rows[0]:
            a.plot(epochs, [float(r["val_psnr"]) for r in rows], marker=".", label=label)
        if rows and "train_loss" in rows[0]:
            b.semilogy(epochs, [float(r["train_loss"]) for r in rows], label=label)
    a.set_xlabel("epoch")
    a.set_ylabel("validation PSNR (dB, window 40/400)")
    a.legend(fontsize=7)
    b.set_xlabel("epoch")
    b.set_ylabel("training loss (MSE, HU/1000)")
    fig.tight_layout()
    save_figure_png(fig, path)
    plt.close(fig)


def body_mask(normal_hu: np.ndarray) -> np.ndarray:
    """The patient: pixels above -500 HU in the normal-dose slice, holes (lungs, bowel gas) filled."""
    from scipy import ndimage

    return ndimage.binary_fill_holes(ndimage.binary_opening(normal_hu > -500, iterations=2))


def save_panels(images: dict[str, np.ndarray], path: Path, crop: tuple[slice, slice] | None = None,
                title: str = "") -> None:
    """One row of windowed images (input, outputs, target) and one of |output - target| maps, over ``crop``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.utils.fileio import atomic_path

    target = images["normal dose (target)"]
    order = ["low-dose input", "BM3D"]
    names = [n for n in order if n in images]
    names += [n for n in images if n not in names and n != "normal dose (target)"] + ["normal dose (target)"]
    lo, hi = WINDOW[0] - WINDOW[1] / 2, WINDOW[0] + WINDOW[1] / 2
    h, w = target.shape
    crop = crop or (slice(h // 4, 3 * h // 4), slice(w // 6, 5 * w // 6))
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.0))
    if title:
        fig.suptitle(title, fontsize=9)
    for k, name in enumerate(names):
        axes[0, k].imshow(images[name][crop], cmap="gray", vmin=lo, vmax=hi)
        axes[0, k].set_title(name, fontsize=8)
        if name != "normal dose (target)":
            axes[1, k].imshow((images[name] - target)[crop], cmap="RdBu_r", vmin=-100, vmax=100)
            axes[1, k].set_title("output - target (±100 HU)", fontsize=7)
        for r in range(2):
            axes[r, k].axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=72)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
