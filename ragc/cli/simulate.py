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
    from ragc.cli.llm import echo_lines, llm_lines, llm_summary
    from ragc.cli.report import print_simulation, simulation_summary

    llm = llm_summary(plan)  # an LLM bundle: each phase's split, time to first token and tokens/s
    if as_json:
        summary = simulation_summary(plan) | ({"llm": llm} if llm else {})
        click.echo(json.dumps(summary, indent=1, sort_keys=True))
    else:
        print_simulation(plan)
        echo_lines(llm_lines(llm) if llm else [])
