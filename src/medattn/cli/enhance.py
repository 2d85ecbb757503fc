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
        colorize: str = typer.Option("auto", "--colorize",
                                     help="which inputs to colorize: auto (only grayscale ones: one channel, or "
                                          "RGB with equal channels; colour images keep their own colours), "
                                          "always (every input, colour ones too), never"),
        alpha: float = typer.Option(0.5, min=0.0, max=1.0,
                                    help="fusion balance (paper 002, eq. 7: fused = alpha * image + "
                                         "(1 - alpha) * CAWE map * image): 1 keeps the image unchanged, "
                                         "0 keeps only what the attention map marks"),
        size: int | None = typer.Option(None, min=32, help="side at which the classifier sees each image "
                                                            "(default: from the model card)"),
    ) -> None:
        """Enhance images for lesion detection: CAWE attention map, colorized image, and their fusion (eq. 7).

        Writes <name>_heatmap.png (CAWE attention), <name>_heatmap_overlay.png, <name>_colorized.png
        (only for the images colorized: by default the grayscale ones) and <name>_fused.png: the fusion of
        the CAWE map with the colorized image (else the input), eq. 7 of paper 002 (Ramola):
        alpha * image + (1 - alpha) * map * image, which keeps the regions the classifier finds
        lesion-like bright and dims the rest.
        """
        from medattn.cli.inputs import collect_images, output_folder
        from medattn.enhance import resolve_colorizer
        from medattn.enhance.cli_run import run_enhance

        colorize = colorize.strip().lower()
        files = collect_images(inputs)
        used = resolve_colorizer(colorizer, colorize)
        with output_folder(out):
            done = run_enhance(files, model, out, colorizer=used, alpha=alpha, size=size, colorize=colorize)
        if used is None:
            how = "none (fused the input images" + (", --colorize never)" if colorize == "never" else ")")
        else:
            how = (used + (" (bundled default)" if colorizer is None else "")
                   + f"; --colorize {colorize}: colorized {done.colorized}")
            if done.kept_colour:
                how += f", kept colour {done.kept_colour} (colour input(s) fused in their own colours)"
        typer.echo(f"enhanced {done.written} image(s) into {out}; colorizer: {how}")
