"""``medattn evaluate``: score prediction maps against ground-truth masks (PraNet toolbox metrics)."""

from __future__ import annotations

from pathlib import Path

import typer

from medattn.errors import MedattnError


def _model_pairs(model: Path, data: Path, split: Path | None, out: Path | None, tta: bool):
    """Predict with a checkpoint (engine's ``medattn.inference``) and return (id, pred, gt) triples."""
    try:
        from medattn.inference import evaluate_model
    except ImportError:
        raise MedattnError("model evaluation is not available: medattn.inference is not installed") from None
    return evaluate_model(model=model, data=data, split=split, out=out, tta=tta)


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
        model: Path | None = typer.Option(
            None, "--model", help="Checkpoint to evaluate (instead of --pred/--gt)."
        ),
        data: Path | None = typer.Option(None, "--data", help="Data set folder for --model."),
        split: Path | None = typer.Option(None, "--split", help="Split file selecting the test images (--model)."),
        tta: bool = typer.Option(False, "--tta", help="Test-time augmentation (--model)."),
    ) -> None:
        """Score predictions against ground truth with the PraNet toolbox metrics.

        Files pair by name stem; predictions are resized to their ground truth's
        size. Prints the data-set row; CSV and JSON also hold one row per image.
        """
        from rich.console import Console

        from medattn.evaluation import FORMATS, evaluate_folders, evaluate_pairs, render
        from medattn.utils.fileio import atomic_write_text

        if fmt not in FORMATS:
            raise MedattnError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if pred_type not in ("auto", "prob", "binary"):
            raise MedattnError(f"--pred-type must be auto, prob or binary, got {pred_type!r}")
        err = Console(stderr=True, soft_wrap=True)
        folders = pred is not None or gt is not None
        if model is not None or data is not None:
            if folders:
                raise MedattnError("give either --pred/--gt or --model/--data, not both")
            if model is None or data is None:
                raise MedattnError("--model and --data go together")
            pairs = _model_pairs(model, data, split, out, tta)
            result = evaluate_pairs(
                pairs, name=name or model.stem, pred_type=pred_type, workers=workers, progress=True
            )
            out_file = None
        else:
            if split is not None or tta:
                raise MedattnError("--split and --tta need --model/--data")
            if pred is None or gt is None:
                raise MedattnError("give --pred DIR and --gt DIR (or --model CHECKPOINT --data PATH)")
            result = evaluate_folders(
                pred,
                gt,
                name=name,
                pred_type=pred_type,
                workers=workers,
                progress=True,
                warn=lambda line: err.print(f"warning: {line}", markup=False, highlight=False),
            )
            out_file = out
        if result.binary_count:
            err.print(
                f"note: {result.binary_count} of {result.count} predictions scored as binary masks "
                "(--pred-type prob to sweep thresholds as the toolbox does)",
                markup=False,
                highlight=False,
            )
        text = render(result, fmt)
        if out_file is not None:
            atomic_write_text(out_file, text)
            typer.echo(render(result, "md"), nl=False)  # the mean row
            err.print(f"wrote {out_file}", markup=False, highlight=False)
        else:
            typer.echo(text, nl=False)
