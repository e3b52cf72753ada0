"""`ragc simulate PLAN`: the predicted timeline on the chip the plan was compiled for (no hardware needed)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("simulate")
@click.argument("plan", type=click.Path(path_type=Path))
def command(plan: Path) -> None:
    """Print PLAN's predicted timeline on the chip it was compiled for, against each processor alone.

    \b
    Example:
      ragc simulate plan-hx370/
    """
    from ragc.cli.report import print_simulation

    print_simulation(plan)
