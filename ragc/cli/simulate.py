"""`ragc simulate PLAN`: the predicted timeline on the chip the plan was compiled for (no hardware needed)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("simulate")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print {predicted_ms, energy_mj, partitions: [...]} as JSON.")
def command(plan: Path, as_json: bool) -> None:
    """Print PLAN's predicted timeline and energy on the chip it was compiled for, against each processor alone.

    \b
    Example:
      ragc simulate plan-hx370/
    """
    from ragc.cli.report import print_simulation, simulation_summary

    if as_json:
        click.echo(json.dumps(simulation_summary(plan), indent=1, sort_keys=True))
    else:
        print_simulation(plan)
