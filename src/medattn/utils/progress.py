"""The progress bar of the long-running commands: rich, on stderr, transient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A bar ``description [####  ] 12/100 0:01:10`` on stderr; yields ``advance(n)``.

    Stdout stays parseable (``--format json``) and the bar disappears when done.
    Nothing is drawn when ``enabled`` is false or stderr is not a terminal: rich
    would leave an empty line in a log or pipe.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn(f"[bold]{escape(description)}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not (enabled and console.is_terminal)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
