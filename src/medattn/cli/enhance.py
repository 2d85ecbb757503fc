"""``medattn enhance``: CAWE attention heat maps, colorized and fused (eq. 7) images for lesion detection."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("enhance")
    def enhance(
        inputs: list[Path] = typer.Argument(..., help="image files or folders (searched recursively)"),
        model: str = typer.Option(..., "--model", "-m",
                                  help="lesion classifier: bundled name, checkpoint file or run folder"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        colorizer: str | None = typer.Option(None, "--colorizer", "-c",
                                             help="colorization generator (bundled name, file or run folder); "
                                                  "default: the bundled colorizer, if one ships; 'none' fuses "
                                                  "the input image itself"),
        alpha: float = typer.Option(0.5, min=0.0, max=1.0, help="eq. 7 balance: 1 keeps the image unchanged"),
        size: int | None = typer.Option(None, min=32, help="side at which the classifier sees each image "
                                                            "(default: from the model card)"),
    ) -> None:
        """Enhance images for lesion detection: writes <name>_heatmap.png (CAWE attention),
        <name>_heatmap_overlay.png, <name>_colorized.png (when a colorizer is used) and <name>_fused.png."""
        from medattn.enhance import resolve_colorizer
        from medattn.enhance.cli_run import run_enhance

        used = resolve_colorizer(colorizer)
        written = run_enhance(inputs, model, out, colorizer=used, alpha=alpha, size=size)
        how = "none (fused the input images)" if used is None else used + (" (bundled default)" if colorizer is None else "")
        typer.echo(f"enhanced {written} image(s) into {out}; colorizer: {how}")
