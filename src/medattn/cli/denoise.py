"""``medattn denoise``: low-dose CT denoising of DICOM, NIfTI, PNG and TIFF files."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("denoise")
    def denoise(
        inputs: list[Path] = typer.Argument(..., help="DICOM files or series folders, NIfTI volumes, PNG/TIFF slices"),
        model: str = typer.Option(..., "--model", "-m",
                                  help="denoiser: bundled name (cadn-ldct), a weights file, or 'bm3d'"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder (each output keeps its input's name)"),
        force: bool = typer.Option(False, "--force", help="also run on non-CT DICOM (MR, CR, ...)"),
        dose: float | None = typer.Option(None, "--dose", min=0.001, max=1.0,
                                          help="first simulate this dose fraction (demo on normal-dose data)"),
        window: tuple[float, float] = typer.Option((40.0, 400.0), "--window",
                                                   help="HU center and width that 8-bit PNG/TIFF values span"),
        spacing: float | None = typer.Option(None, "--spacing", min=0.01, max=20.0,
                                             help="pixel size in mm of inputs that carry none (PNG, most TIFF); "
                                                  "DICOM PixelSpacing and NIfTI voxel sizes are read from the file"),
        keep_noise: float | None = typer.Option(
            None, "--keep-noise", min=0.0, max=1.0,
            help="share of the estimated noise to keep (default: the model card's, 0.25 for cadn-ldct: the "
                 "normal-dose noise of a quarter-dose scan; 0 = remove all)"),
        tta: bool | None = typer.Option(
            None, "--tta/--no-tta",
            help="average the network over the 8 rotations / mirror images of each slice (default: the model "
                 "card's inference.tta; about +0.2 dB for 8x the time)"),
    ) -> None:
        """Denoise low-dose CT: DICOM in, DICOM out (same tags and geometry, new UIDs, DERIVED);
        NIfTI in, NIfTI out (affine kept); PNG/TIFF in, same out."""
        from collections import Counter

        from medattn.denoise.apply import denoise_paths

        notes: Counter[str] = Counter()
        n = denoise_paths(model, inputs, out, force=force, dose=dose, window=window, spacing=spacing, notes=notes,
                          keep_noise=keep_noise, tta=tta)
        for message, count in notes.items():
            prefix = "warning: " if "unknown" in message or "no RescaleIntercept" in message else ""
            typer.echo(f"{prefix}{message} ({count} slice{'s' if count != 1 else ''})", err=bool(prefix))
        typer.echo(f"denoised {n} slice(s) into {out}")
