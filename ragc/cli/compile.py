"""`ragc compile MODEL -o PLAN`: compile an ONNX model into a plan bundle."""

from __future__ import annotations

from pathlib import Path

import click

from ragc.cli.output import echo_json, say, verbosity
from ragc.errors import UsageError
from ragc.placement.solve import OBJECTIVES, SOLVERS


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Bundle folder to write.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=AxBxC", help="Static shape for an input (repeatable).")
@click.option("--devices", help="Processors to use, e.g. cpu,gpu,npu [default: all the chip has].")
@click.option("--target", help="Compile for another chip: a name in ragc/targets/ or a personality/target file.")
@click.option("--solver", default="auto", show_default=True, type=click.Choice(SOLVERS), help="Placement solver.")
@click.option(
    "--objective",
    default="latency",
    show_default=True,
    type=click.Choice(OBJECTIVES),
    help="latency: one request soonest; throughput: pipeline stages for streams; energy: least energy per request "
    "(within --max-latency-ms).",
)
@click.option(
    "--max-latency-ms", type=click.FloatRange(min=0, min_open=True), help="With --objective energy: the latency cap."
)
@click.option("--time-limit", default=5.0, show_default=True, help="Seconds the ILP may take.")
@click.option(
    "--place", multiple=True, metavar="PATTERN=DEVICE", help="Force ops (op type, node name or *) onto a device."
)
@click.option("--cut", "cuts", multiple=True, metavar="NODE", help="Start a new partition at this node (repeatable).")
@click.option(
    "--tune/--no-tune",
    default=True,
    show_default=True,
    help="Time candidate plans on this chip and keep the measured best (never for --target).",
)
@click.option("--tune-budget", default=20.0, show_default=True, help="Seconds the timing of candidates may take.")
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "fp16", "bf16", "mixed"]),
    help="GPU partitions: fp16/bf16 storage (mixed: fp32 accumulation), each checked against fp32 and kept in fp32 "
    "where it fails (see `ragc inspect --json`).",
)
@click.option(
    "--variants",
    is_flag=False,
    flag_value="default",
    default=None,
    metavar="LIST",
    help="Several plans in one bundle and a rule that picks one per run from live signals: a comma list of "
    "latency, throughput, energy, no-gpu, no-npu, gpu-busy, or default (alone: the default set); docs/adaptive.md.",
)
@click.option("--llm", is_flag=True, help="MODEL is a decoder with a KV cache: write prefill and decode plans.")
@click.option("--max-context", type=click.IntRange(2), help="With --llm: the KV cache's capacity in tokens.")
@click.option("--prefill", type=click.IntRange(1), help="With --llm: prefill length [default: --max-context].")
@click.option("--json", "as_json", is_flag=True, help="Print the plan summary (as `ragc inspect --json`) as JSON.")
def command(
    model: Path,
    out: Path,
    shapes: tuple[str, ...],
    devices: str | None,
    target: str | None,
    solver: str,
    objective: str,
    max_latency_ms: float | None,
    time_limit: float,
    place: tuple[str, ...],
    cuts: tuple[str, ...],
    tune: bool,
    tune_budget: float,
    precision: str,
    variants: str | None,
    llm: bool,
    max_context: int | None,
    prefill: int | None,
    as_json: bool,
) -> None:
    """Compile MODEL (.onnx) into a plan bundle.

    \b
    Examples:
      ragc compile model.onnx -o plan/
      ragc compile model.onnx -o plan/ --shape image=1x3x224x224 --devices cpu,gpu
      ragc compile model.onnx -o plan-hx370/ --target ryzen-ai-9-hx-370
      ragc compile model.onnx -o plan/ --place Conv=gpu --json | jq .predicted_ms
      ragc compile model.onnx -o plan/ --variants latency,no-gpu,gpu-busy
      ragc compile decoder.onnx -o llm-plan/ --llm --max-context 256
    """
    from ragc.cli.report import plan_summary, print_partitions
    from ragc.frontend import parse_shapes
    from ragc.pipeline import compile_model

    if variants is not None and (llm or max_context or prefill):
        raise UsageError("--variants and --llm do not combine yet; compile the decoder with --llm alone")
    if variants is not None:
        from functools import partial

        from ragc.variants import compile_variants

        compile_model = partial(compile_variants, spec=variants)
    if llm or max_context or prefill:
        _llm(model, out, llm, max_context, prefill, as_json, devices=devices, target=target, solver=solver,
             objective=objective, time_limit_s=time_limit, place=place, tune=tune, tune_budget_s=tune_budget,
             precision=precision, shapes=parse_shapes(shapes) or None)  # fmt: skip
        return
    result = compile_model(
        model,
        out,
        shapes=parse_shapes(shapes),
        devices=devices,
        place=place,
        cut_before=cuts,
        solver=solver,
        objective=objective,
        max_latency_ms=max_latency_ms,
        target=target,
        time_limit_s=time_limit,
        tune=tune,
        tune_budget_s=tune_budget,
        precision=precision,
    )
    rules = forced_cost(result.bundle) if place else None
    if as_json:
        summary = plan_summary(result.bundle, verify_hashes=False)  # just written: no need to hash it all again
        echo_json(summary | {"bundle": str(result.bundle), "seconds": result.seconds, "without_place_ms": rules})
        return
    if verbosity() >= 0:
        print_partitions(result.bundle, verify_hashes=False)
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items())
    detail = f"; {stages}" if verbosity() > 0 else ""
    click.echo(f"wrote {result.bundle} ({len(result.partitions)} partitions{detail})")
    if isinstance(rules, float) and result.predicted_ms > rules * 1.05:
        say(
            f"note: the --place rules cost: automatic placement predicts {rules:.3f} ms, this plan "
            f"{result.predicted_ms:.3f} ms ({result.predicted_ms / rules:.1f}x slower); see `ragc explain {out}`"
        )


def _llm(
    model: Path, out: Path, llm: bool, max_context: int | None, prefill: int | None, as_json: bool, **options
) -> None:
    from ragc.cli.llm import echo_lines, llm_lines, llm_summary
    from ragc.llm.compile import compile_llm

    if not (llm and max_context):
        raise UsageError("--llm needs --max-context N (the KV cache capacity), and --max-context/--prefill need --llm")
    result = compile_llm(model, out, max_context, prefill, **options)
    summary = llm_summary(result.bundle)
    if as_json:
        echo_json(summary | {"bundle": str(result.bundle)})
        return
    parts = "LLM: decode plan schedule.json, prefill plan schedule.prefill.json, one tensor store, llm.json"
    echo_lines([f"wrote {result.bundle} ({parts})", *llm_lines(summary)])


def forced_cost(bundle: Path) -> float | str | None:
    """What the solver predicts for the plan's problem without its --place rules (from the bundle's costs.json)."""
    from ragc.bundle.costs import read_costs
    from ragc.cli.explain_ops import unforced_ms
    from runtime_min.manifest import read_bundle

    doc = read_costs(read_bundle(bundle, verify_hashes=False))
    return None if doc is None else unforced_ms(doc)
