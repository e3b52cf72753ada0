"""`ragc inspect PLAN`: the partitions of a plan, their processors and predicted times; the NPU kernels it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ragc.cli.output import console, echo_json, say, table, verbosity
from ragc.cli.paths import writable_file


def show_xclbins(report: dict[str, Any]) -> None:
    found = sum(1 for x in report["xclbins"] if x["found"])
    if not report["xclbins"]:
        say("the plan has no NPU partition: it references no xclbin")
        return
    refs = table("xclbin (device/design/file)", "instruction files (sizes)", "build in mlir-aie", "found",
                 title="NPU kernels this plan references (ragc never ships them)")  # fmt: skip
    for x in report["xclbins"]:
        where = x["found"] or "missing"
        insts = "\n".join(f"{i['file']} ({' '.join(f'{k}={v}' for k, v in i['dims'].items())})" for i in x["insts"])
        refs.add_row(f"{x['device']}/{x['design']}/{x['xclbin']}", insts, x["make"], where)
    console().print(refs)
    roots = ", ".join(report["xclbin_path"]) or "unset"
    click.echo(f"{found} of {len(report['xclbins'])} found on RAGC_XCLBIN_PATH ({roots}); see docs/npu-xclbins.md")


@click.command("inspect")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--timeline", type=click.Path(dir_okay=False, path_type=Path), help="Write the predicted timeline SVG.")
@click.option("--xclbins", is_flag=True, help="List the NPU xclbins the plan needs and whether they are installed.")
def command(plan: Path, as_json: bool, timeline: Path | None, xclbins: bool) -> None:
    """Show PLAN's partitions: processor, op count, predicted time.

    \b
    Examples:
      ragc inspect plan/
      ragc inspect plan/ --json | jq .predicted_ms
      ragc inspect plan/ --timeline plan.svg
      ragc inspect plan-hx370/ --xclbins
    """
    from ragc.cli.llm import echo_lines, llm_lines, llm_summary
    from ragc.cli.report import plan_summary, print_partitions, write_timeline

    if timeline:
        writable_file(timeline, "--timeline")
    if xclbins:
        from ragc.cli.xclbins import xclbin_report

        report = xclbin_report(plan)
        echo_json(report) if as_json else show_xclbins(report)
    elif as_json:
        llm = llm_summary(plan)
        echo_json(plan_summary(plan) | ({"llm": llm} if llm else {}))
    elif verbosity() < 0:
        summary = plan_summary(plan)
        parts = ", ".join(f"{p['id']} {p['device']}" for p in summary["partitions"])
        click.echo(f"predicted {summary['predicted_ms']:.3f} ms; {len(summary['partitions'])} partitions ({parts})")
    else:
        print_partitions(plan)
        llm = llm_summary(plan)
        if llm:  # an LLM bundle: the table above is its decode plan
            echo_lines(["LLM bundle: the partitions above are the decode plan's; both phases:", *llm_lines(llm)])
    if timeline:
        write_timeline(plan, timeline)
        click.echo(f"timeline written to {timeline}", err=as_json)
