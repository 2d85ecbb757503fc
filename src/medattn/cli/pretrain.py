"""``medattn pretrain``: self-supervised masked-image pretraining of the MAE or an encoder."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    def pretrain(
        config: Path = typer.Argument(..., help="YAML pretraining config (see configs/pretrain_*.yaml)."),
        set_: list[str] = typer.Option(
            [], "--set", help="Override a config value: key=value, dotted keys (data.max_images=64). Repeatable."
        ),
        out: Path | None = typer.Option(None, "--out", help="Output folder (overrides out_dir of the config)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.pt when it exists."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Masked-image pretraining on unlabeled images; writes mae.safetensors or encoder.safetensors.

        The MAE result loads into GRCSF with `mae=PATH`; an encoder result loads with
        `create_encoder(NAME, pretrained=PATH)` or a model's `pretrained_encoder=PATH`.
        """
        from medattn.pretrain import load_pretrain_config, run_pretraining

        cfg = load_pretrain_config(config, list(set_))
        if out is not None:
            cfg.out_dir = out
        result = run_pretraining(cfg, resume=resume, progress=not quiet)
        last = result.epoch_losses[-1] if result.epoch_losses else float("nan")
        secs = result.seconds_per_epoch[-1] if result.seconds_per_epoch else float("nan")
        typer.echo(f"pretrained {cfg.kind} on {result.num_images} images: {len(result.epoch_losses)} epochs, "
                   f"final loss {last:.4f}, {secs:.1f} s/epoch")
        typer.echo(f"weights: {result.weights}")
        typer.echo(f"checkpoint: {result.checkpoint}")
