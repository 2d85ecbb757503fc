"""``medattn predict``: masks, overlays, attention maps and lesion measurements for images."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        inputs: list[Path] = typer.Argument(..., help="image files or folders (searched recursively)"),
        model: str = typer.Option(..., "--model", "-m",
                                  help="bundled model name (see `medattn models`), checkpoint file or run folder"),
        out: Path = typer.Option(..., "--out", "-o", help="output folder"),
        threshold: float | None = typer.Option(None, min=0.0, max=1.0,
                                               help="probability threshold of the mask (default: the model "
                                                    "card's inference.threshold, else 0.5)"),
        tta: bool | None = typer.Option(None, "--tta/--no-tta",
                                        help="test-time augmentation: average with flipped inputs (default: "
                                             "the model card's inference.tta, else off)"),
        zoom: int | None = typer.Option(None, "--zoom", min=1,
                                        help="also predict overlapping windows of 1/N of the image side at the "
                                             "model's input size and fuse them (finds lesions too small for the "
                                             "whole frame; about (2N-1)^2 more forward passes; 1: off; default: "
                                             "the model card's inference.zoom, else 1)"),
        batch_size: int = typer.Option(4, min=1, help="images per forward pass (bounds memory)"),
    ) -> None:
        """Segment images: writes <name>_mask.png, <name>_overlay.png, <name>_attention.png and <name>.json
        (per-lesion area, bounding box, mean confidence) for each input."""
        from medattn.cli.inputs import collect_images, output_folder
        from medattn.inference import predict_paths
        from medattn.inference.files import segmentation_model

        files = collect_images(inputs)  # every input checked before the model loads or anything is written
        lm = segmentation_model(model)
        typer.echo(lm.describe_settings(tta, threshold, zoom))
        with output_folder(out):
            written = predict_paths(lm, files, out, tta=tta, threshold=threshold, batch_size=batch_size,
                                    zoom=zoom)
        typer.echo(f"wrote results for {len(written)} image(s) to {out}")
