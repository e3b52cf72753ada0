"""`ragc inspect PLAN`: the partitions of a plan, their processors and predicted times."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ragc.cli.paths import writable_file


@click.command("inspect")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--timeline", type=click.Path(dir_okay=False, path_type=Path), help="Write the predicted timeline SVG.")
def command(plan: Path, as_json: bool, timeline: Path | None) -> None:
    """Show PLAN's partitions: processor, op count, predicted time.

    \b
    Examples:
      ragc inspect plan/
      ragc inspect plan/ --json | jq .predicted_ms
      ragc inspect plan/ --timeline plan.svg
    """
    from ragc.cli.report import plan_summary, print_partitions, write_timeline

    if timeline:
        writable_file(timeline, "--timeline")
    if as_json:
        click.echo(json.dumps(plan_summary(plan), indent=1, sort_keys=True))
    else:
        print_partitions(plan)
    if timeline:
        write_timeline(plan, timeline)
        click.echo(f"timeline written to {timeline}", err=as_json)
