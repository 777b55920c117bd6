"""A rich progress display for loading large data sets (silent when not on a terminal)."""

from __future__ import annotations

__all__ = ["loading_progress"]

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def loading_progress(
    description: str, total: float | None, console: Console | None = None, *, unit: str = "bytes"
) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(amount)``; with ``total=None`` a spinner counts ``unit`` instead of a bar."""
    con = console or Console(stderr=True)
    if total is None:
        cols: tuple[object, ...] = (
            SpinnerColumn(),
            TextColumn(f"[bold]{description}"),
            TextColumn(f"{{task.completed:,.0f}} {unit}"),
            TimeElapsedColumn(),
        )
    else:
        cols = (TextColumn(f"[bold]{description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*cols, console=con, transient=True, disable=not con.is_terminal) as prog:  # type: ignore[arg-type]
        task = prog.add_task(description, total=total)

        def advance(amount: float) -> None:
            prog.advance(task, amount)

        yield advance
