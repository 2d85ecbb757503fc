"""``medattn datasets``: check dataset folders and write train/val/test split files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medattn.errors import ConfigError

datasets_app = typer.Typer(
    help="Recognise dataset layouts, check their files, write split files.", no_args_is_help=True
)

_LAYOUT_HELP = (
    "force a layout instead of detecting it: kvasir-seg, cvc-clinicdb, cvc-clinicdb-official, "
    "pranet-train, pranet-test, ph2, isic, dsb2018, paired, unlabeled"
)


def _short(paths: list[str], root: str, limit: int = 5) -> str:
    rel = [str(Path(p).relative_to(root)) if p.startswith(root) else p for p in paths[:limit]]
    more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(rel) + more


def _print_report(report) -> None:  # CheckReport; imported lazily
    from rich.console import Console
    from rich.table import Table

    m = report.masks
    table = Table(title=f"dataset check: {report.root}", show_header=False, title_justify="left")
    table.add_column("item", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("layout", report.layout)
    if report.labelled:
        table.add_row("pairs", str(report.labelled))
    if report.unlabeled:
        table.add_row("unlabeled images", str(report.unlabeled))
    if len(report.subsets) > 1:
        table.add_row("subsets", ", ".join(f"{k}: {v}" for k, v in report.subsets.items()))
    table.add_row(
        "unmatched images",
        f"{len(report.unmatched_images)}"
        + (f": {_short(report.unmatched_images, report.root)}" if report.unmatched_images else ""),
    )
    table.add_row(
        "unmatched masks",
        f"{len(report.unmatched_masks)}"
        + (f": {_short(report.unmatched_masks, report.root)}" if report.unmatched_masks else ""),
    )
    if report.height_range:
        (h0, h1), (w0, w1) = report.height_range, report.width_range
        table.add_row("image size (HxW)", f"{h0}..{h1} x {w0}..{w1}")
    table.add_row("image modes", ", ".join(f"{k}: {v}" for k, v in report.image_modes.items()))
    if m.files:
        values = ", ".join(map(str, m.values)) if m.values is not None else f"{m.n_values} distinct values"
        table.add_row("mask values", values)
        table.add_row(
            "masks",
            f"{m.binary} binary (0/255), {m.antialiased} with soft edges or noise, "
            f"{m.colour_files} stored as colour, {m.empty} empty",
        )
        table.add_row(
            "mask pixels",
            f"{100 * m.non_binary_fraction:.3f}% neither 0 nor 255, {100 * m.ambiguous_fraction:.4f}% in 64..191; "
            f"mean foreground {100 * m.foreground_fraction:.1f}%",
        )
        table.add_row("mask rule", report.mask_rule)
    table.add_row("problems", "\n".join(report.problems) if report.problems else "none")
    table.add_row("time", f"{report.seconds:.1f} s")
    Console().print(table)


@datasets_app.command("check")
def check(
    path: Path = typer.Argument(..., help="dataset root folder"),
    layout: str = typer.Option(None, "--layout", help=_LAYOUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON instead of a table"),
    workers: int = typer.Option(0, "--workers", help="threads reading files (0: number of cores, at most 4)"),
    strict: bool = typer.Option(
        False, "--strict", help="exit with status 1 when problems or unmatched files are found"
    ),
) -> None:
    """Recognise the layout of PATH and report pairs, unmatched files, sizes, mask values and problems.

    Masks are binarised by the rule: foreground = gray value > 127.
    """
    from medattn.data.check import check_dataset

    report = check_dataset(path, layout=layout, workers=workers or None, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        _print_report(report)
    if strict and not report.ok:
        raise typer.Exit(1)


@datasets_app.command("split")
def split(
    path: Path = typer.Argument(None, help="dataset root folder (for --ratios / --kfold)"),
    out: Path = typer.Option(
        ..., "--out", help="split file to write (JSON); k-fold writes <stem>_fold<i>.json"
    ),
    protocol: str = typer.Option(
        None, "--protocol",
        help="named protocol: 'pranet' (needs --data-root) or 'folders' (PATH's own train/val/test folders)",
    ),
    data_root: Path = typer.Option(
        None, "--data-root", help="folder holding kvasir-seg/, cvc-clinicdb/ and splits/ (PraNet protocol)"
    ),
    ratios: str = typer.Option(None, "--ratios", help="train:val[:test] ratios, e.g. 7:1:2 or 8:1:1"),
    kfold: int = typer.Option(0, "--kfold", help="number of folds for k-fold cross-validation"),
    seed: int = typer.Option(0, "--seed", help="random seed (same seed, same split)"),
    layout: str = typer.Option(None, "--layout", help=_LAYOUT_HELP),
    val_ratio: float = typer.Option(
        0.1, "--val-ratio", help="folders: share of train/ kept for validation when val/ becomes the test part"
    ),
    relative_root: bool = typer.Option(
        False, "--relative-root", help="store the data root relative to the split file (a split to commit)"
    ),
) -> None:
    """Write a split file: the PraNet protocol, a dataset's own folders, a seeded ratio split or k folds."""
    from medattn.data import discover, folder_split, kfold_split, pranet_split, ratio_split, save_split
    from medattn.data.splits import parse_ratios

    chosen = [name for name, on in (("--protocol", protocol), ("--ratios", ratios), ("--kfold", kfold)) if on]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --protocol pranet|folders, --ratios R, --kfold K")
    written: list[tuple[Path, dict[str, int]]] = []
    if protocol and protocol.lower() == "folders":
        if path is None:
            raise ConfigError("--protocol folders needs the dataset folder PATH (train/, val/, test/ parts)")
        parts = folder_split(discover(path, layout=layout or "presplit").samples, val_ratio, seed)
        save_split(out, parts, meta={"protocol": "folders", "val_ratio": val_ratio, "seed": seed,
                                     "source": str(path)}, relative_root=relative_root)
        written.append((out, {k: len(v) for k, v in parts.items()}))
    elif protocol:
        if protocol.lower() != "pranet":
            raise ConfigError(f"unknown protocol '{protocol}'; known: pranet, folders")
        if data_root is None:
            raise ConfigError(
                "--protocol pranet needs --data-root (the folder holding kvasir-seg/ and cvc-clinicdb/)"
            )
        parts = pranet_split(data_root)
        save_split(out, parts, meta={"protocol": "pranet"}, relative_root=relative_root)
        written.append((out, {k: len(v) for k, v in parts.items()}))
    else:
        if path is None:
            raise ConfigError("give the dataset folder PATH to split")
        samples = discover(path, layout=layout).samples
        if ratios:
            r = parse_ratios(ratios)
            parts = ratio_split(samples, r, seed=seed)
            save_split(out, parts, meta={"ratios": list(r), "seed": seed, "source": str(path)}, relative_root=relative_root)
            written.append((out, {k: len(v) for k, v in parts.items()}))
        else:
            for i, fold in enumerate(kfold_split(samples, kfold, seed=seed)):
                target = out.with_name(f"{out.stem}_fold{i}{out.suffix or '.json'}")
                save_split(target, fold, meta={"kfold": kfold, "fold": i, "seed": seed, "source": str(path)}, relative_root=relative_root)
                written.append((target, {k: len(v) for k, v in fold.items()}))
    for target, counts in written:
        typer.echo(f"wrote {target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@datasets_app.command("merge")
def merge(
    out: Path = typer.Option(..., "--out", help="split file to write (JSON)"),
    part: list[str] = typer.Option(
        ..., "--part", help="NAME=FILE:PART[,FILE:PART...]: part NAME of the new split gathers these parts "
                            "of existing split files (repeat for each part)"),
    relative_root: bool = typer.Option(
        False, "--relative-root", help="store the data root relative to the split file (a split to commit)"
    ),
) -> None:
    """Merge parts of split files into one split: train on several data sets, keep each test set apart.

    Example: ISIC 2017 training pairs and PH2 fold 0 together, each held-out set its own test part:

      medattn datasets merge --out skin.json --part train=isic.json:train,ph2_fold0.json:train
          --part val=isic.json:val --part test_isic=isic.json:test --part test_ph2=ph2_fold0.json:val
    """
    from medattn.data import save_split
    from medattn.data.splits import merge_splits, parse_merge_part

    spec: dict[str, list[tuple[Path, str]]] = {}
    for text in part:
        name, sources = parse_merge_part(text)
        if name in spec:
            raise ConfigError(f"--part {name} given twice")
        spec[name] = sources
    parts = merge_splits(spec)
    meta = {"merged": {name: [f"{f}:{p}" for f, p in sources] for name, sources in spec.items()}}
    save_split(out, parts, meta=meta, relative_root=relative_root)
    typer.echo(f"wrote {out}: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()))


@datasets_app.command("augmentations")
def augmentations() -> None:
    """List the augmentation names usable in a training config, with their default options."""
    from medattn.data.transforms import ALIASES, describe_transforms

    for name, desc, defaults in describe_transforms():
        opts = ", ".join(f"{k}={v}" for k, v in defaults.items())
        typer.echo(f"{name:15s} {desc}\n{'':15s} options: {opts}")
    typer.echo("aliases: " + ", ".join(f"{a} -> {b}" for a, b in ALIASES.items()))


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")
