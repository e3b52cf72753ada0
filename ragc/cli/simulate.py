"""`ragc simulate PLAN`: the predicted timeline on the chip the plan was compiled for (no hardware needed); with
`--signals FILE`, the variants an adaptive plan's rule picks over a recorded signal trace."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("simulate")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print {predicted_ms, energy_mj, partitions: [...]} as JSON.")
@click.option(
    "--signals",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Replay this signal trace (JSON lines) through an adaptive plan's rule and print each run's variant.",
)
@click.option("--runs", type=click.IntRange(min=1), help="With --signals: runs to replay [default: to the last line].")
def command(plan: Path, as_json: bool, signals: Path | None, runs: int | None) -> None:
    """Print PLAN's predicted timeline and energy on the chip it was compiled for, against each processor alone.

    \b
    Examples:
      ragc simulate plan-hx370/
      ragc simulate plan/ --signals gpu-load.jsonl
    """
    from ragc.cli.llm import echo_lines, llm_lines, llm_summary
    from ragc.cli.report import print_simulation, simulation_summary

    if signals is not None:
        _replay(plan, signals, runs, as_json)
        return
    llm = llm_summary(plan)  # an LLM bundle: each phase's split, time to first token and tokens/s
    if as_json:
        summary = simulation_summary(plan) | ({"llm": llm} if llm else {})
        click.echo(json.dumps(summary, indent=1, sort_keys=True))
    else:
        print_simulation(plan)
        echo_lines(llm_lines(llm) if llm else [])


def _replay(plan: Path, signals: Path, runs: int | None, as_json: bool) -> None:
    from ragc.errors import UsageError
    from runtime_min.adaptive import ReplaySignals, Rule, variant_files
    from runtime_min.adaptive.rule import replay
    from runtime_min.manifest import read_bundle

    manifest = read_bundle(plan).manifest
    variants = variant_files(manifest)
    if not variants:
        raise UsageError(f"{str(plan)!r} holds one plan, no variants; compile it with --variants to replay signals")
    source = ReplaySignals(signals)
    choices = replay(Rule.from_json(manifest.get("rule"), set(variants)), source, runs or source.lines[-1][0] + 1)
    rows = [{"run": i, "variant": c.variant, "reason": c.reason, "probe": c.probe} for i, c in enumerate(choices)]
    if as_json:
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    for row in rows:
        click.echo(f"{row['run']:>5}  {row['variant']:<10}  {row['reason']}")
