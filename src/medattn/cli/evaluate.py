"""``medattn evaluate``: score prediction maps against ground-truth masks (PraNet toolbox metrics)."""

from __future__ import annotations

from pathlib import Path

import typer

from medattn.errors import MedattnError


def _model_result(model: str, data: Path, split: Path | None, out: Path | None, **score):
    """Predict with a model (``medattn.inference.score_model``) and score the maps."""
    try:
        from medattn.inference import score_model
    except ImportError:
        raise MedattnError("model evaluation is not available: medattn.inference is not installed") from None
    return score_model(model, data, split, out=out, **score)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` verb."""

    @app.command("evaluate")
    def evaluate(
        pred: Path | None = typer.Option(
            None, "--pred", help="Folder of predictions (8-bit probability maps or binary masks)."
        ),
        gt: Path | None = typer.Option(None, "--gt", help="Folder of ground-truth masks (foreground > 127)."),
        name: str = typer.Option("", "--name", help="Label of this result (method or data set)."),
        fmt: str = typer.Option("md", "--format", help="Output format: md (mean row), csv or json."),
        out: Path | None = typer.Option(
            None,
            "--out",
            help="Write the result to this file (with --model: folder for the predicted maps; "
            "the table then goes to stdout).",
        ),
        pred_type: str = typer.Option(
            "auto",
            "--pred-type",
            help="auto: a map without values in 32..223 is a hard mask, otherwise a probability map; "
            "prob: always a probability map (exactly the PraNet toolbox); binary: always a mask.",
        ),
        workers: int | None = typer.Option(
            None, "--workers", min=1, help="Worker processes (default: all available CPUs, max 8)."
        ),
        model: str | None = typer.Option(
            None, "--model", metavar="NAME|PATH",
            help="Model to evaluate instead of --pred/--gt: a bundled name (bsanet-polyp, see `medattn models`), "
            "a run folder or a checkpoint file.",
        ),
        data: Path | None = typer.Option(None, "--data", help="Data set folder for --model."),
        split: Path | None = typer.Option(
            None, "--split",
            help="With --model: the test images, as a plain list of file names one a line "
            "(PraNet's kvasir-seg_pranet_test.txt in ../shared/data/splits) or a JSON split from `medattn datasets split` "
            "(its test parts, only the images inside --data). Default: every labelled image of --data.",
        ),
        tta: bool | None = typer.Option(None, "--tta/--no-tta",
                                        help="Test-time augmentation (--model; default: the model card's "
                                             "inference.tta, else off)."),
        threshold: float | None = typer.Option(
            None, "--threshold", metavar="P",
            help="With --model: the mask (p > threshold) that Dice, IoU, precision and recall score "
            "(default: the model card's inference.threshold, else 0.5).",
        ),
        zoom: int | None = typer.Option(
            None, "--zoom", metavar="N", min=1,
            help="With --model: also predict overlapping windows of 1/N of the image side and fuse them "
            "(small lesions; 1: off; default: the model card's inference.zoom, else 1).",
        ),
    ) -> None:
        """Score predictions against ground truth with the PraNet toolbox metrics.

        Files pair by name stem; predictions are resized to their ground truth's
        size. Prints the data-set row; CSV and JSON also hold one row per image.
        A pair that cannot be read is reported by name and skipped; the others
        are scored and the exit status is then 1.
        """
        from rich.console import Console

        from medattn.evaluation import FORMATS, evaluate_folders, render
        from medattn.utils.fileio import atomic_write_text

        if fmt not in FORMATS:
            raise MedattnError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if pred_type not in ("auto", "prob", "binary"):
            raise MedattnError(f"--pred-type must be auto, prob or binary, got {pred_type!r}")
        err = Console(stderr=True, soft_wrap=True)

        def say(line: str) -> None:
            err.print(line, markup=False, highlight=False)

        folders = pred is not None or gt is not None
        if model is not None or data is not None:
            if folders:
                raise MedattnError("give either --pred/--gt or --model/--data, not both")
            if model is None or data is None:
                raise MedattnError("--model and --data go together")
            if threshold is not None and not 0.0 <= threshold <= 1.0:
                raise MedattnError(f"--threshold must be in [0, 1], got {threshold:g}")
            result = _model_result(model, data, split, out, tta=tta, threshold=threshold, zoom=zoom, name=name,
                                   pred_type=pred_type, workers=workers, progress=True,
                                   log=lambda line: say(f"evaluate: {line}"), skip_unreadable=True)
            out_file = None
        else:
            if split is not None or tta is not None or threshold is not None or zoom is not None:
                raise MedattnError("--split, --tta, --threshold and --zoom need --model/--data")
            if pred is None or gt is None:
                raise MedattnError("give --pred DIR and --gt DIR (or --model NAME --data PATH)")
            result = evaluate_folders(pred, gt, name=name, pred_type=pred_type, workers=workers, progress=True,
                                      warn=lambda line: say(f"warning: {line}"), skip_unreadable=True)
            out_file = out
        for message in result.skipped:
            say(f"warning: skipped {message}")
        if result.binary_count:
            say(f"note: {result.binary_count} of {result.count} predictions scored as binary masks "
                "(--pred-type prob to sweep thresholds as the toolbox does)")
        text = render(result, fmt)
        if out_file is not None:
            atomic_write_text(out_file, text)
            typer.echo(render(result, "md"), nl=False)  # the mean row
            say(f"wrote {out_file}")
        else:
            typer.echo(text, nl=False)
        if result.skipped:
            total = result.count + len(result.skipped)
            say(f"error: {len(result.skipped)} of {total} pairs could not be read; scores are of the other "
                f"{result.count}")
            raise typer.Exit(1)
