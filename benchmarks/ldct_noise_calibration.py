"""Calibrate the low-dose simulation to real quarter-dose noise: noise SD and noise power spectrum.

    python benchmarks/ldct_noise_calibration.py --threads 1

On the real AAPM/Mayo pairs (``../shared/data/ct/mayo-l506-real``: quarter- and full-dose of the
same slices, 0.742 mm pixels, B30f kernel) the real noise is ``quarter - full``. The simulator is
run on the *full-dose* slices themselves, so anatomy, pixel size and patient size are the same:

* **before**: the simulation the shipped model was trained with (whole-slice reconstruction,
  ramp filter, ``i0`` 2e6, 25 % dose): ``simulate_low_dose(full) - full``, which also carries the
  reconstruction chain's discretisation error;
* **candidates**: noise insertion (``simulate_noise``) with Hann kernels of several cutoffs; the
  cutoff whose NPS *shape* is closest to the real one (mean over slices) is kept, then ``i0`` is
  scaled so the soft-tissue SD matches (noise variance goes as ``1 / i0``);
* **after**: noise insertion with the fitted kernel and ``i0``, a new noise draw, checked.

Writes ``benchmarks/results/ldct_noise_calibration.{json,md}`` and ``docs/img/ldct_nps.png``
(radially averaged NPS, real vs simulated, before and after; noise SD per slice).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CUTOFFS = (1.0, 1.15, 1.25, 1.35, 1.5, 2.0)


def _pairs(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from medattn.denoise.data import RealLDCTPairs

    real = RealLDCTPairs(folder, spacing=1.0)
    return [real.pair(i)[::-1] for i in range(len(real))]  # (id, full, quarter)


def main(argv: list[str] | None = None) -> int:
    import torch

    from medattn.denoise.noise import noise_power_spectrum, nps_shape_distance, soft_tissue_mask
    from medattn.denoise.simulate import DEFAULT_I0, simulate_low_dose, simulate_noise
    from medattn.utils.fileio import atomic_write_text
    from medattn.utils.paths import shared_data_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = shared_data_root()
    ap.add_argument("--pairs", type=Path, default=(root / "ct" / "mayo-l506-real") if root else None,
                    help="folder of *_quarter_hu.npy / *_full_hu.npy pairs")
    ap.add_argument("--spacing", type=float, default=0.7421875, help="pixel size of the pairs (mm)")
    ap.add_argument("--dose", type=float, default=0.25, help="dose fraction of the low-dose scans")
    ap.add_argument("--cutoffs", default=",".join(f"{c:g}" for c in DEFAULT_CUTOFFS),
                    help="Hann cutoffs (x Nyquist) to try")
    ap.add_argument("--roi", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ldct_noise_calibration"))
    ap.add_argument("--figure", type=Path, default=Path("docs/img/ldct_nps.png"))
    args = ap.parse_args(argv)
    if args.pairs is None or not args.pairs.is_dir():
        ap.error(f"real pairs not found: {args.pairs} (give --pairs)")
    torch.set_num_threads(args.threads)
    cutoffs = [float(c) for c in args.cutoffs.split(",") if c.strip()]
    kernels = tuple(("hann", c) for c in cutoffs)
    t0 = time.time()

    pairs = _pairs(args.pairs)
    masks = [soft_tissue_mask(full) for _, full, _ in pairs]

    def nps(images: list[np.ndarray]) -> Any:
        return noise_power_spectrum(images, masks, pixel_mm=args.spacing, roi=args.roi)

    def per_slice_sd(images: list[np.ndarray]) -> list[float]:
        return [round(float(img[m].std()), 2) for img, m in zip(images, masks, strict=True)]

    real_noise = [q - f for _, f, q in pairs]
    real = nps(real_noise)
    print(f"real: SD {real.std_hu:.1f} HU, mean frequency {real.mean_frequency:.3f} /mm", flush=True)

    before = [simulate_low_dose(f, args.dose, pixel_size_mm=args.spacing, seed=100 + i) - f
              for i, (_, f, _) in enumerate(pairs)]
    before_nps = nps(before)
    print(f"before: SD {before_nps.std_hu:.1f} HU, distance {nps_shape_distance(real, before_nps):.3f}", flush=True)

    cand = [simulate_noise(f, args.dose, pixel_size_mm=args.spacing, seed=200 + i, kernels=kernels)
            for i, (_, f, _) in enumerate(pairs)]
    candidates = []
    for k, (_, cutoff) in enumerate(kernels):
        spec = nps([c[k] for c in cand])
        candidates.append({"kernel": ["hann", cutoff], "std_hu": round(spec.std_hu, 3),
                           "mean_frequency_per_mm": round(spec.mean_frequency, 4),
                           "shape_distance": round(nps_shape_distance(real, spec), 4)})
        print(f"hann {cutoff:g}: SD {spec.std_hu:.1f}, distance {candidates[-1]['shape_distance']:.3f}", flush=True)
    best = min(candidates, key=lambda c: c["shape_distance"])
    i0_fit = DEFAULT_I0 * (best["std_hu"] / real.std_hu) ** 2
    kernel = ("hann", float(best["kernel"][1]))

    after = [simulate_noise(f, args.dose, i0=i0_fit, pixel_size_mm=args.spacing, seed=300 + i, kernels=(kernel,))[0]
             for i, (_, f, _) in enumerate(pairs)]
    after_nps = nps(after)
    print(f"after: hann {kernel[1]:g}, i0 {i0_fit:.3g}: SD {after_nps.std_hu:.1f}, "
          f"distance {nps_shape_distance(real, after_nps):.3f}", flush=True)

    result = {
        "benchmark": "ldct_noise_calibration",
        "pairs": str(args.pairs), "ids": [sid for sid, _, _ in pairs], "pixel_mm": args.spacing,
        "dose": args.dose, "roi": args.roi, "mask": "soft tissue (-150..250 HU after a 5x5 median), eroded 4 px",
        "real": real.to_dict(),
        "before": {"method": "simulate_low_dose - full (ramp, i0 2e6, whole-slice reconstruction)",
                   "i0": DEFAULT_I0, "kernel": ["ramp", 1.0], **before_nps.to_dict(),
                   "shape_distance": round(nps_shape_distance(real, before_nps), 4)},
        "candidates": candidates,
        "after": {"method": "simulate_noise (projection-domain noise insertion)", "i0": round(i0_fit, -2),
                  "kernel": list(kernel), **after_nps.to_dict(),
                  "shape_distance": round(nps_shape_distance(real, after_nps), 4)},
        "per_slice_sd_hu": {"real": per_slice_sd(real_noise), "before": per_slice_sd(before),
                            "after": per_slice_sd(after)},
        "seconds": round(time.time() - t0, 1), "threads": args.threads, "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), _markdown(result))
    _figure(result, args.figure)
    print(f"wrote {args.out.with_suffix('.json')}, {args.out.with_suffix('.md')}, {args.figure}")
    return 0


def _markdown(r: dict[str, Any]) -> str:
    lines = [f"Real quarter-dose noise (quarter - full) of {len(r['ids'])} AAPM/Mayo slices "
             f"({', '.join(r['ids'])}; {r['pixel_mm']} mm pixels) vs the simulation on the same full-dose slices; "
             f"soft-tissue {r['roi']}x{r['roi']} ROIs.", "",
             "| noise | kernel | i0 | SD (HU) | NPS mean frequency (1/mm) | NPS shape distance to real |",
             "|---|---|---|---|---|---|",
             f"| real quarter - full | B30f | - | {r['real']['std_hu']:.1f} | "
             f"{r['real']['mean_frequency_per_mm']:.3f} | 0 |"]
    for key, label in (("before", "before (shipped model's training)"), ("after", "after calibration")):
        e = r[key]
        lines.append(f"| {label} | {e['kernel'][0]} {e['kernel'][1]:g} | {e['i0']:.3g} | {e['std_hu']:.1f} | "
                     f"{e['mean_frequency_per_mm']:.3f} | {e['shape_distance']:.3f} |")
    lines += ["", "Candidate kernels (noise insertion at i0 2e6; the shape distance chooses the cutoff, "
              "then i0 is scaled to the real SD):", "", "| Hann cutoff (x Nyquist) | SD (HU) | mean frequency | "
              "shape distance |", "|---|---|---|---|"]
    lines += [f"| {c['kernel'][1]:g} | {c['std_hu']:.1f} | {c['mean_frequency_per_mm']:.3f} | "
              f"{c['shape_distance']:.3f} |" for c in r["candidates"]]
    sd = r["per_slice_sd_hu"]
    lines += ["", "Soft-tissue SD per slice (HU): " + "; ".join(
        f"{sid}: real {a}, before {b}, after {c}" for sid, a, b, c in zip(r["ids"], sd["real"], sd["before"],
                                                                         sd["after"], strict=True)), ""]
    return "\n".join(lines)


def _figure(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.utils.figures import save_figure_png

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = (("real", "real quarter - full", "k-"), ("before", "before: ramp, i0 2e6", "r--"),
              ("after", f"after: hann {r['after']['kernel'][1]:g}, i0 {r['after']['i0']:.2g}", "b-"))
    for key, label, style in styles:
        e = r[key]
        a.plot(e["freq_per_mm"], e["nps_hu2_mm2"], style, label=f"{label} (SD {e['std_hu']:.1f} HU)")
    a.set_xlabel("spatial frequency (1/mm)")
    a.set_ylabel("NPS (HU² mm²)")
    a.set_title("Noise power spectrum, soft tissue")
    a.legend(fontsize=7)
    sd = r["per_slice_sd_hu"]
    x = np.arange(len(r["ids"]))
    for j, (key, colour) in enumerate((("real", "k"), ("before", "r"), ("after", "b"))):
        b.bar(x + (j - 1) * 0.27, sd[key], 0.27, color=colour, label=key)
    b.set_xticks(x, r["ids"], fontsize=7)
    b.set_ylabel("noise SD (HU)")
    b.set_title("Soft-tissue noise SD per slice")
    b.legend(fontsize=7)
    fig.tight_layout()
    save_figure_png(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
