"""How every command writes: consoles that never cut a table when the output is not a terminal (a pipe or a file
gets the full width), no colour under NO_COLOR or off a terminal, JSON that is always valid, one-line warnings,
progress bars only on a terminal, and the -v/-q level."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

PIPE_WIDTH = 100_000  # off a terminal nothing is wrapped or cut: a row is one line however long
REDRAW_S = 0.2
VERBOSITY = "ragc.verbosity"  # click context meta key: -1 quiet, 0 normal, 1+ verbose


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr): a terminal's width on a terminal, otherwise wide enough for any row.
    rich honours NO_COLOR (and FORCE_COLOR); off a terminal it writes no colour codes."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(file=stream, width=None if terminal else PIPE_WIDTH, highlight=False)


def table(*columns: str, title: str | None = None, right: tuple[str, ...] = (), caption: str | None = None) -> Table:
    """A table whose cells fold instead of ending in an ellipsis when a terminal is narrow; `right` columns are
    right-justified (numbers)."""
    t = Table(title=title, caption=caption)
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left", overflow="fold")
    return t


def verbosity() -> int:
    """-1 under -q, 0 by default, the number of -v otherwise (0 outside a command)."""
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().meta.get(VERBOSITY, 0) if ctx else 0


def set_verbosity(ctx: click.Context, param: click.Parameter, value: int | bool) -> None:
    """Callback of -v and -q (on the group and on every command): they add up; giving both is a usage error."""
    meta = ctx.find_root().meta
    if not value:
        return
    step = -1 if param.name == "quiet" else int(value)
    if meta.get(VERBOSITY, 0) * step < 0:
        raise click.UsageError("give -v or -q, not both")
    meta[VERBOSITY] = -1 if step < 0 else meta.get(VERBOSITY, 0) + step


def verbosity_options() -> list[click.Option]:
    """-v/--verbose (repeatable) and -q/--quiet, as fresh options for one command."""
    common = {"expose_value": False, "callback": set_verbosity}
    return [
        click.Option(
            ["-v", "--verbose"], count=True, help="More detail (-vv: a traceback with every error).", **common
        ),
        click.Option(["-q", "--quiet"], is_flag=True, help="Only results and errors: no tables or notes.", **common),
    ]


def say(text: str, level: int = 0) -> None:
    """A line of normal output, shown at verbosity `level` and above (0: unless -q; 1: with -v)."""
    if verbosity() >= level:
        click.echo(text)


def warn(text: str) -> None:
    """One `warning:` line on stderr (also under -q: a warning is never hidden)."""
    click.echo(f"warning: {text.splitlines()[0] if text else ''}", err=True)


def echo_json(data: Any) -> None:
    """`data` as JSON on stdout: sorted keys, and NaN or infinities written as null so any parser reads it."""
    click.echo(json.dumps(_finite(data), indent=1, sort_keys=True, allow_nan=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr while the block runs (only on a terminal and not under -q); yields `advance(label)`.
    `total=None` is a bar without an end. Redrawn at most every REDRAW_S from the caller's thread: a refresh thread
    would take the GIL in the middle of timed runs."""
    shown = sys.stderr.isatty() and verbosity() >= 0
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[label]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        auto_refresh=False,
        disable=not shown,
    )
    drawn = [0.0]

    def advance(label: str = "") -> None:
        bar.update(task, advance=1, label=label)
        if time.perf_counter() - drawn[0] > REDRAW_S:
            bar.refresh()
            drawn[0] = time.perf_counter()

    with bar:
        task = bar.add_task(description, total=total, label="")
        yield advance
