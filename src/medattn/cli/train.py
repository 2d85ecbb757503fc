"""``medattn train``: train any registered model from a YAML config (also under torchrun for DDP)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Path | None = typer.Argument(None, help="YAML config (see configs/ and docs/training.md); "
                                                       "not needed with --resume"),
        set_: list[str] = typer.Option([], "--set", "-s", help="override a setting: key=value with a dotted key, "
                                                                "e.g. --set train.epochs=5 --set data.input_size=176"),
        out: Path | None = typer.Option(None, "--out", "-o", help="run folder (default: out_dir of the config, "
                                                                  "else runs/<config name>)"),
        resume: Path | None = typer.Option(None, "--resume", help="continue the run in this folder exactly where "
                                                                  "its last checkpoint left it"),
        stop_after: int | None = typer.Option(None, "--stop-after", min=1,
                                              help="stop after N epochs of this invocation (resume later)"),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="show the progress bar"),
    ) -> None:
        """Train a model: best/last checkpoints (safetensors + JSON card), history.csv/json, curves.png,
        config.yaml and split.json in the run folder. Under `torchrun --nproc_per_node=N -m medattn train`
        it trains with DistributedDataParallel."""
        from medattn.errors import ConfigError
        from medattn.training.config import load_config
        from medattn.training.trainer import default_run_dir, train

        if resume is not None:
            if config is not None:
                raise ConfigError("give either CONFIG or --resume RUN_DIR (the run's config.yaml is reused; "
                                  "change settings with --set)")
            if not (resume / "config.yaml").is_file():
                raise ConfigError(f"{resume}: not a run folder (no config.yaml)")
            cfg = load_config(resume / "config.yaml", set_)
            run_dir = out or resume
        else:
            if config is None:
                raise ConfigError("give a CONFIG file (or --resume RUN_DIR)")
            cfg = load_config(config, set_)
            run_dir = out or default_run_dir(cfg)
        result = train(cfg, run_dir=run_dir, resume=resume is not None, progress=progress,
                       stop_after=stop_after)
        if os.environ.get("RANK", "0") != "0":
            return  # torchrun: rank 0 reports
        best = f"{result.monitor} {result.best:.4f} at epoch {result.best_epoch}" if result.best is not None else "-"
        state = "paused (resume with --resume)" if result.paused else (
            "stopped early" if result.stopped_early else "done")
        typer.echo(f"{state}: {result.epochs_done} epoch(s), best {best}; run folder {result.run_dir}")
