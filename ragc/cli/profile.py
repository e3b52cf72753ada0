"""`ragc profile`: measure this chip into its personality, or show a personality or target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ragc.cli.output import console as new_console
from ragc.cli.output import echo_json
from ragc.personality.store import Personality


def personality_summary(personality: Personality) -> dict[str, Any]:
    """The stable `ragc profile --show --json` view: chip, devices with peaks, overheads, memory and sample
    counts by source, transfers, and this machine's NPU stack."""
    from ragc.profiler.npu_stack import npu_stack
    from ragc.profiler.record import sample_sources

    counts = sample_sources(personality)
    keys = ("name", "peak_gflops", "peak_gbps", "dispatch_ms", "op_overhead_ms", "memory_bytes")
    return {
        "chip_id": personality.chip_id,
        "kind": "target" if personality.is_target else "measured",
        "unified_memory": personality.unified_memory,
        "path": str(personality.path) if personality.path else None,
        "devices": {
            d: {k: personality.device(d).get(k) for k in keys} | {"samples": counts.get(d, {})}
            for d in personality.devices
        },
        "transfers": personality.data.get("transfers", {}),
        "npu_stack": [{"part": f.part, "found": f.found, "detail": f.detail} for f in npu_stack()],
    }


def show_personality(personality: Personality, console: Console) -> None:
    """A table per personality: devices with peaks, overheads, memory and sample counts by source; transfers."""
    from ragc.profiler.record import sample_sources

    counts = sample_sources(personality)
    kind = "target" if personality.is_target else "measured"
    console.print(
        f"chip [bold]{personality.chip_id}[/] ({kind}), unified memory: {personality.unified_memory}"
        + (f", file {personality.path}" if personality.path else "")
    )
    table = Table(
        "device",
        "name",
        "GFLOP/s",
        "GB/s",
        "launch ms",
        "op ms",
        "memory GiB",
        "one-op",
        "in models",
        "run",
        caption="samples: one-op micro-benchmarks, ops timed inside whole random models, ops from recorded runs",
    )
    for d in personality.devices:
        e = personality.device(d)
        c = counts.get(d, {})
        table.add_row(
            d,
            str(e.get("name", "")),
            f"{e['peak_gflops']:.1f}",
            f"{e['peak_gbps']:.1f}",
            f"{e['dispatch_ms']:.4f}",
            f"{e['op_overhead_ms']:.4f}",
            f"{e['memory_bytes'] / 2**30:.1f}",
            str(c.get("profile", 0)),
            str(c.get("context", 0)),
            str(c.get("run", 0)),
        )
    console.print(table)
    links = personality.data.get("transfers", {})
    if links:
        table = Table("transfer", "latency ms", "GB/s")
        for pair, link in sorted(links.items()):
            table.add_row(pair, f"{link['latency_ms']:.4f}", f"{link['gbps']:.2f}")
        console.print(table)
    runs = sum(c.get("run", 0) for c in counts.values())
    console.print(f"{runs} samples came from recorded runs")
    show_npu_stack(console)


def show_npu_stack(console: Console) -> None:
    """What of the XDNA NPU stack this machine has (whatever personality is shown: the stack is this machine's)."""
    from ragc.profiler.npu_stack import npu_stack

    table = Table("NPU stack on this machine", "found", "detail")
    for finding in npu_stack():
        table.add_row(finding.part, "yes" if finding.found else "[red]no[/]", finding.detail)
    console.print(table)


@click.command("profile")
@click.option("--quick", is_flag=True, help="Fewer shapes and repeats (under 2 minutes).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the personality to this file [default: only the per-chip cache].",
)
@click.option("--show", is_flag=True, help="Show the stored personality (or --target) instead of profiling.")
@click.option("--target", help="With --show: a target name from ragc/targets/ or a personality/target file.")
@click.option("--json", "as_json", is_flag=True, help="With --show: print the personality summary as JSON.")
def profile(quick: bool, output: Path | None, show: bool, target: str | None, as_json: bool) -> None:
    """Measure this chip's processors (op costs, launch overheads, transfers) into its personality.

    \b
    Examples:
      ragc profile --quick
      ragc profile --show
      ragc profile --show --target ryzen-ai-9-hx-370 --json | jq .devices.npu
    """
    from ragc.errors import PersonalityError, UsageError
    from ragc.personality.store import load_personality, save_personality

    console = new_console()
    if as_json and not show:
        raise UsageError("--json goes with --show (profiling prints its progress, then the table)")
    if show:
        if as_json:
            echo_json(personality_summary(load_personality(target)))
        else:
            show_personality(load_personality(target), console)
        return
    if target is not None:
        raise PersonalityError("--target only goes with --show: a target cannot be profiled from this machine")
    from ragc.profiler.profile import profile_chip

    personality = profile_chip(quick=quick)
    path = save_personality(personality)
    if output is not None:
        save_personality(Personality(personality.data), output)
    console.print(f"saved {path}" + (f" and {output}" if output else ""))
    show_personality(personality, console)


command = profile
