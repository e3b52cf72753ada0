"""`ragc costmodel eval`: leave-one-model-out accuracy of the cost model on this chip."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ragc.cli.output import console as new_console
from ragc.cli.output import echo_json


@click.group("costmodel")
def costmodel() -> None:
    """Inspect the cost model.

    \b
    Example:
      ragc costmodel eval --models tinynet --devices cpu
    """


@costmodel.command("eval")
@click.option(
    "--models",
    help="Comma-separated model names or .onnx files (weightless skeletons such as bench/skeletons/*.onnx are "
    "filled first) [default: the light zoo plus generated models].",
)
@click.option(
    "--devices",
    default="cpu,gpu",
    show_default=True,
    help="Processors to evaluate; the GPU runs each model as one ragc GPU partition (models it cannot run whole "
    "are listed as skipped).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON (device -> report) instead of tables.")
@click.option("--budget", default=2.0, show_default=True, type=float, help="Seconds of timing per model and device.")
@click.option("--save-timings", type=click.Path(dir_okay=False, path_type=Path), help="Also write the measurements.")
@click.option(
    "--timings",
    "saved",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Evaluate measurements saved by --save-timings instead of measuring (e.g. after changing the cost model).",
)
@click.option(
    "--target",
    help="With --timings: the personality file of the chip they were measured on (e.g. another machine's).",
)
def evaluate(
    models: str | None,
    devices: str,
    as_json: bool,
    budget: float,
    save_timings: Path | None,
    saved: Path | None,
    target: str | None,
) -> None:
    """Leave-one-model-out accuracy of the cost model on this chip's processors (op level and end to end).

    \b
    Examples:
      ragc costmodel eval --models tinynet,squeezenet --devices cpu
      ragc costmodel eval --save-timings timings.json --json > eval.json
      ragc costmodel eval --timings docs/results/h200-costmodel-timings.json --target docs/results/h200-personality.json
    """
    from ragc.errors import PersonalityError
    from ragc.profiler.evaluate import device_report, load_measurements, measure_devices
    from ragc.profiler.profile import personality_or_profile
    from ragc.profiler.zoo import model_set

    console = new_console(stderr=as_json)
    if target is not None and saved is None:
        raise PersonalityError("--target goes with --timings: measuring needs the chip itself, so run it there")
    personality = personality_or_profile(target)
    chosen = [d.strip() for d in devices.split(",") if d.strip()]
    unknown = sorted(set(chosen) - {"cpu", "gpu"})
    if unknown:
        raise PersonalityError(f"costmodel eval measures cpu and gpu, not {', '.join(unknown)}; pass --devices cpu,gpu")
    if saved is not None:
        if models:
            raise click.UsageError("--timings evaluates the models it holds; leave out --models")
        measured = {d: m for d, m in load_measurements(saved, personality.chip_id).items() if d in chosen}
    else:
        measured = measure_devices(
            personality, model_set(models.split(",") if models else None), chosen, budget, console
        )
    if save_timings is not None:
        save_timings.write_text(json.dumps({"chip_id": personality.chip_id, "devices": measured}, sort_keys=True))
    reports = {device: device_report(personality, device, m) for device, m in measured.items()}
    if as_json:
        echo_json(reports)
    else:
        for report in reports.values():
            render_report(report, console)


def render_report(report: dict, console: Console) -> None:
    table = Table(
        title=f"cost model, leave one model out, {report['device']} ({report['device_name']}) of {report['chip_id']}",
        caption="ops-sum: the error of the same sum made of the measured op times; alone: the profile's own prediction"
        " (no model's samples, as --no-tune); noise: spread of repeated timings",
    )
    table.add_column("model", overflow="fold")
    headers = ("ops", "measured ms", "predicted ms", "error %", "op MAPE %", "ops ±10% %", "ops-sum %", "alone %")
    for header in (*headers, "noise %"):
        table.add_column(header, justify="right")
    for r in report["models"]:
        style = "green" if abs(r["error_pct"]) <= 10 else "red"
        table.add_row(
            r["model"],
            str(r["ops"]),
            f"{r['measured_ms']:.3f}",
            f"{r['predicted_ms']:.3f}",
            f"[{style}]{r['error_pct']:+.1f}[/]",
            f"{r['op_mape_pct']:.1f}",
            f"{r['op_within_10_pct']:.1f}",
            f"{r['measured_ops_error_pct']:+.1f}",
            f"{r['alone_error_pct']:+.1f}",
            f"{r['noise_pct']:.1f}",
        )
    console.print(table)
    ops = report["ops"]
    console.print(
        f"{report['device']}: {ops['count']} ops, MAPE {ops['mape_pct']:.1f}%, "
        f"{ops['within_10_pct']:.1f}% within +-10%; models within +-10% end to end: "
        f"{report['models_within_10']}/{len(report['models'])}; the profile alone within +-15%: "
        f"{report['alone_within_15']}/{len(report['models'])}"
    )
    if report.get("skipped"):
        console.print(f"{report['device']}: not run whole there, skipped: {', '.join(report['skipped'])}")
    steady = report.get("steadiness")
    if steady:
        never = f"; {steady['unmatched']} models never did (less certain)" if steady["unmatched"] else ""
        console.print(
            f"{report['device']}: {steady['counted']} of {steady['blocks']} timing blocks ran in the machine state "
            f"the personality was profiled in{never}"
        )


command = costmodel
