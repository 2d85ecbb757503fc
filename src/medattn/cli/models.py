"""``medattn models`` (list the zoo) and ``medattn export`` (ONNX, checked with ONNX Runtime).

``medattn models`` reads its records from ``model_catalog.json`` beside this
module, without importing torch or building a network (about 0.3 s instead
of 6 s). The catalog is what :func:`model_records` computes from the registry
and the bundled model cards; it is written by ``python -m medattn.cli.models``
(``scripts/bundle_model.py`` does it after bundling), a test checks that it is
current, and when a bundled card has changed since it was written the records
are computed afresh.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

import typer

from medattn.errors import ConfigError
from medattn.utils.fileio import atomic_write_text

CATALOG = Path(__file__).with_name("model_catalog.json")
CATALOG_FORMAT = "medattn-model-catalog/1"
# medattn.models.hub.WEIGHTS_DIR, without importing medattn.models (which imports torch)
_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def count_parameters(name: str) -> int:
    """Parameters of ``name`` built with its default options.

    Built on the ``meta`` device (no memory, no initialisation), falling back
    to a real build for models whose constructor computes on tensors.
    """
    import torch

    from medattn.models import create

    try:
        with torch.device("meta"):
            model = create(name)
    except Exception:
        model = create(name)
    return sum(p.numel() for p in model.parameters())


def model_records(pattern: str = "*", task: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per registered model matching ``pattern`` / ``task``."""
    from medattn.models import list_models, model_info
    from medattn.models.hub import is_bundled

    out = []
    for name in list_models(pattern, task=task):
        info = model_info(name)
        out.append({
            "name": name,
            "task": info.task,
            "params": count_parameters(name),
            "paper_params": info.paper_params,
            "input_size": list(info.input_size),
            "bundled": is_bundled(name),
            "paper": info.paper,
            "description": info.description,
            "default_options": info.default_options,
        })
    return out + bundled_records(pattern, task)


def bundled_records(pattern: str = "*", task: str | None = None) -> list[dict[str, Any]]:
    """One record per trained model shipped in ``medattn/weights`` (e.g. ``bsanet-polyp``), ``bundled: true``."""
    import torch

    from medattn.models import create, model_info
    from medattn.models.hub import WEIGHTS_DIR, is_bundled, model_card

    out = []
    for path in sorted(WEIGHTS_DIR.glob("*.safetensors")):
        name = path.stem
        if not fnmatch.fnmatch(name, pattern) or not is_bundled(name):
            continue
        card = model_card(path)
        info = model_info(card["model"])
        if task is not None and card.get("task", info.task) != task:
            continue
        try:
            with torch.device("meta"):
                net = create(card["model"], **card.get("options", {}))
        except Exception:
            net = create(card["model"], **card.get("options", {}))
        params = sum(p.numel() for p in net.parameters())
        out.append({
            "name": name,
            "task": card.get("task", info.task),
            "params": params,
            "paper_params": info.paper_params,
            "input_size": list(card.get("input_size") or info.input_size),
            "bundled": True,
            "paper": info.paper,
            "description": f"{card['model']} trained weights: {card.get('summary') or info.description}",
            "default_options": card.get("options", {}),
            "architecture": card["model"],
        })
    return out


def _card_digests() -> dict[str, str]:
    """SHA-256 of each bundled model card (the catalog's bundled records depend on nothing else)."""
    return {p.stem: hashlib.sha256(p.with_suffix(".json").read_bytes()).hexdigest()
            for p in sorted(_WEIGHTS_DIR.glob("*.safetensors")) if p.with_suffix(".json").is_file()}


def catalog_document() -> dict[str, Any]:
    """The catalog as computed now: every record, the tasks, the digests of the cards."""
    from medattn.models.registry import TASKS

    return {"format": CATALOG_FORMAT, "tasks": list(TASKS), "cards": _card_digests(), "models": model_records()}


def write_catalog(path: Path = CATALOG) -> Path:
    """Recompute the catalog (builds every network on the meta device) and write it atomically."""
    return atomic_write_text(path, json.dumps(catalog_document(), indent=1) + "\n")


def _catalog() -> dict[str, Any]:
    """The stored catalog when it matches the bundled cards, else one computed now."""
    try:
        doc = json.loads(CATALOG.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != CATALOG_FORMAT or doc.get("cards") != _card_digests():
        doc = catalog_document()
    return doc


def _print_table(records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(records)} models", title_justify="left")
    for col, kw in (("name", {"style": "bold", "no_wrap": True}), ("task", {"no_wrap": True}),
                    ("params", {"justify": "right", "no_wrap": True}),
                    ("paper", {"justify": "right", "no_wrap": True}), ("input", {"no_wrap": True}),
                    ("bundled", {"no_wrap": True}), ("description", {"overflow": "fold", "min_width": 30})):
        table.add_column(col, **kw)
    for r in records:
        pp = r["paper_params"]
        table.add_row(r["name"], r["task"], f"{r['params'] / 1e6:.2f}M", f"{pp / 1e6:.2f}M" if pp else "-",
                      "x".join(map(str, r["input_size"])), "yes" if r["bundled"] else "no", r["description"])
    console = Console()
    console.width = max(console.width, 140)  # pipes default to 80 columns
    console.print(table)


def models(
    pattern: str = typer.Argument("*", help="glob over model names, e.g. 'hlfnet*'"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of a table"),
    task: str = typer.Option(None, "--task", help="only models of this task (segmentation, denoising, ...)"),
) -> None:
    """List the registered models: task, parameters, input size, bundled weights."""
    catalog = _catalog()
    if task is not None and task not in catalog["tasks"]:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(catalog['tasks'])}")
    records = [r for r in catalog["models"]
               if fnmatch.fnmatch(r["name"], pattern) and (task is None or r["task"] == task)]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    elif not records:
        raise ConfigError(f"no model matches {pattern!r}" + (f" with task {task!r}" if task else ""))
    else:
        _print_table(records)


def _load_for_export(spec: str, in_channels: int | None, num_classes: int | None):
    from medattn.models import list_models
    from medattn.models.hub import is_bundled, load_bundled, load_model_file

    opts = {k: v for k, v in (("in_channels", in_channels), ("num_classes", num_classes)) if v is not None}
    if spec not in list_models() and is_bundled(spec):  # a shipped trained model such as bsanet-polyp
        return load_bundled(spec, **opts), "bundled weights"
    if spec in list_models():
        if is_bundled(spec):
            return load_bundled(spec, **opts), "bundled weights"
        from medattn.models import create

        return create(spec, **opts).eval(), "random weights (no trained weights bundled)"
    path = Path(spec)
    if path.suffix or path.exists():
        if opts:
            raise ConfigError("--in-channels/--num-classes apply to a model name, not to a model file")
        return load_model_file(path), f"weights from {path}"
    from medattn.models.registry import model_info

    model_info(spec)  # raises with close-name suggestions
    raise AssertionError("unreachable")


def export(
    model: str = typer.Option(..., "--model", help="registry name (see `medattn models`) or a model file "
                              "(.safetensors with its .json card, or a training checkpoint)"),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write"),
    size: int = typer.Option(256, "--size", help="input height and width of the exported graph", min=8),
    height: int = typer.Option(None, "--height", help="input height (overrides --size)", min=8),
    width: int = typer.Option(None, "--width", help="input width (overrides --size)", min=8),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version", min=9),
    in_channels: int = typer.Option(None, "--in-channels", help="input channels for a model name (1 or 3)"),
    num_classes: int = typer.Option(None, "--num-classes", help="output classes for a model name"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="make the batch dimension symbolic"),
    atol: float = typer.Option(1e-4, "--atol", help="largest accepted difference between PyTorch and ONNX"),
) -> None:
    """Export a model to ONNX and check it against PyTorch with ONNX Runtime."""
    from medattn.models.export import export_onnx, max_abs_difference

    net, source = _load_for_export(model, in_channels, num_classes)
    hw = (height or size, width or size)
    path = export_onnx(net, onnx, size=hw, opset=opset, dynamic_batch=dynamic_batch)
    diff = max_abs_difference(net, path, batch_size=2 if dynamic_batch else 1)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {source}, input {hw[0]}x{hw[1]}, opset {opset})")
    typer.echo(f"max abs difference PyTorch vs ONNX Runtime: {diff:.3g}")
    if not diff < atol:
        raise ConfigError(f"{path}: ONNX output differs from PyTorch by {diff:.3g} (> {atol:g})")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("export")(export)


if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
