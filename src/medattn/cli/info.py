"""``medattn info PATH...``: what medattn reads from an image, volume or DICOM folder."""

from __future__ import annotations

from pathlib import Path

import typer


def _fmt_spacing(spacing: tuple[float, ...] | None) -> str:
    return "-" if spacing is None else " x ".join(f"{s:.4g}" for s in spacing) + " mm"


def describe(path: Path, max_pixels: int | None) -> dict[str, str]:
    """The inspector's fields for one path (raises MedattnIOError on bad input)."""
    import numpy as np

    from medattn.io import read_image

    img = read_image(path, max_pixels=max_pixels, progress=True)
    arr, meta = img.array, img.meta
    if arr.dtype == np.bool_:
        value_range = f"{int(arr.sum()):,} of {arr.size:,} true"
    else:
        value_range = f"{arr.min():.6g} .. {arr.max():.6g} (mean {arr.mean(dtype=np.float64):.6g})"
    fields = {
        "path": str(path),
        "format": meta.format,
        "shape": " x ".join(str(s) for s in arr.shape) + f" ({meta.layout})",
        "dtype": str(arr.dtype) + (f" (stored {meta.original_dtype})" if meta.original_dtype != arr.dtype.name
                                   else ""),
        "spacing": _fmt_spacing(meta.spacing),
        "modality": meta.modality or "-",
        "range": value_range,
    }
    if meta.extra.get("axcodes"):
        fields["orientation"] = "".join(meta.extra["axcodes"])
    if meta.extra.get("photometric"):
        fields["photometric"] = meta.extra["photometric"]
    return fields


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        paths: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, TIFF, BMP, DICOM, NIfTI, .npy) "
                                                     "or DICOM series folders."),
        max_pixels: int = typer.Option(
            100_000_000, "--max-pixels", help="Refuse planes larger than this many pixels (0: no limit)."
        ),
    ) -> None:
        """Show format, shape, dtype, spacing, modality and value range of each image."""
        limit = None if max_pixels <= 0 else max_pixels
        for i, path in enumerate(paths):
            fields = describe(path, limit)
            if i:
                typer.echo("")
            width = max(len(k) for k in fields)
            for key, value in fields.items():
                typer.echo(f"{key:<{width}}  {value}")
