"""Entry point of the ``medattn`` command.

Each verb lives in its own module exposing ``register(app)``; heavy imports
(torch, MONAI) happen inside the commands so that ``medattn --help`` is fast.
User errors (:class:`medattn.errors.MedattnError`) are printed as one line on
stderr and the process exits with status 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from medattn import __version__
from medattn.errors import MedattnError

app = typer.Typer(
    name="medattn",
    help="Attention-based medical image analysis: denoise, segment, enhance, evaluate, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Verb modules, in the order they appear in --help.
_VERB_MODULES = (
    "info",
    "datasets",
    "evaluate",
    "models",
    "train",
    "pretrain",
    "predict",
    "denoise",
    "enhance",
    "serve",
    "users",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medattn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """medattn command line."""


def _flags_without_placeholder() -> None:
    """Show on/off flags (``--tta``, ``--force``, ``--help``) without a ``<bool>`` value placeholder.

    typer's rich help prints each option's type, also for flags, which take no
    value; click's plain help shows nothing there, and neither do we.
    """
    from typer.core import TyperOption

    typed = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return typed(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_placeholder()


def _register_verbs() -> None:
    for name in _VERB_MODULES:
        try:
            module = importlib.import_module(f"medattn.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"medattn.cli.{name}":
                continue  # verb not built yet
            raise
        module.register(app)


_register_verbs()


def error_line(exc: BaseException) -> str:
    """Format an exception as the single line the CLI prints."""
    return f"error: {exc}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of raising (used by tests too)."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except MedattnError as exc:
        typer.echo(error_line(exc), err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:
        # click usage errors (typer vendors click) carry their own formatting
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            typer.echo(error_line(exc), err=True)
            return 2
        raise
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
