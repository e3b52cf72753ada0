"""`ragc explain PLAN|MODEL`: why each op runs where it does. A plan folder is explained from the costs.json its
compile stored; a model is placed in memory for a target (or this chip) and explained the same way, with the
NPU's side of it (what it cannot run, its kernels against its launches) and each processor first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ragc.cli.output import echo_json, progress, say
from ragc.cli.params import POSITIVE_SECONDS
from ragc.cli.paths import writable_file
from ragc.errors import UsageError
from ragc.placement.solve import OBJECTIVES

MODEL_ONLY = {"target": "--target", "objective": "--objective", "max_latency_ms": "--max-latency-ms",
              "shapes": "--shape", "devices": "--devices"}  # fmt: skip


def plan_facts(plan: Path, manifest: dict[str, Any], schedule: dict[str, Any]) -> dict[str, Any]:
    """What the manifest says about a plan that the explanation repeats."""
    return {
        "what": f"plan {plan} ({manifest.get('model_name', 'model')})",
        "source": "plan",
        "path": str(plan),
        "chip_id": manifest.get("chip_id"),
        "gap": manifest.get("gap"),
        "predicted_ms": manifest.get("predicted_ms"),
        "processors": schedule.get("processors"),
        "candidates": manifest.get("candidates", []),
        "chosen_candidate": manifest.get("chosen"),
        "measured_ms": manifest.get("measured_ms"),
    }


def _explained(doc: dict[str, Any], moves: bool, time_limit: float) -> dict[str, Any]:
    from ragc.cli.explain_ops import explain_ops, moves_needed

    with progress("re-solving", len(moves_needed(doc)) if moves else 0) as advance:
        return explain_ops(doc, moves, time_limit, advance)


def _plan_mode(plan: Path, moves: bool, time_limit: float) -> tuple[dict, dict, dict]:
    from ragc.bundle.costs import read_costs
    from runtime_min.errors import BundleError
    from runtime_min.manifest import read_bundle

    bundle = read_bundle(plan)
    doc = read_costs(bundle)
    if doc is None:
        raise BundleError(
            f"plan {str(plan)!r} has no costs.json (compiled by an older ragc, or nothing to place); "
            "recompile it with this ragc to see why each op runs where it does"
        )
    facts = plan_facts(plan, bundle.manifest, bundle.schedule)
    return facts, doc, _explained(doc, moves, time_limit)


def _model_mode(model: Path, given: dict[str, Any], moves: bool, time_limit: float) -> tuple[dict, dict, dict, dict]:
    from ragc.bundle.costs import costs_document
    from ragc.cli.explain_npu import model_analysis, place
    from ragc.frontend import parse_shapes

    shapes = parse_shapes(given["shapes"])
    args = (given["target"], given["objective"])
    chosen = place(model, shapes, *args, given["devices"], given["max_latency_ms"])
    first = {d: place(model, shapes, *args, d, given["max_latency_ms"]) for d in chosen.devices}
    doc = costs_document(chosen)
    facts = {
        "what": f"model {model}",
        "source": "model",
        "path": str(model),
        "chip_id": chosen.personality.chip_id,
        "gap": chosen.placement.gap,
        "predicted_ms": chosen.placement.predicted_ms + chosen.personality.fixed_ms,
        "processors": sorted(set(chosen.placement.assignment.values())),
    }
    return facts, doc, _explained(doc, moves, time_limit), model_analysis(chosen, first)


@click.command("explain")
@click.argument("source", metavar="PLAN|MODEL", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.option("--svg", type=click.Path(dir_okay=False, path_type=Path), help="Draw the graph, coloured by processor.")
@click.option("--moves/--no-moves", default=True, show_default=True, help="Re-solve to price moving each op.")
@click.option(
    "--time-limit",
    default=30.0,
    show_default=True,
    type=POSITIVE_SECONDS,
    help="Seconds for all re-solves together (each gets its share, 0.05 to 2 s).",
)
@click.option("--target", help="MODEL only: a chip that is not here (a name in ragc/targets/ or a file).")
@click.option("--objective", type=click.Choice(OBJECTIVES), help="MODEL only [default: latency].")
@click.option("--max-latency-ms", type=POSITIVE_SECONDS, help="MODEL only, with --objective energy: the cap.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=AxBxC", help="MODEL only: a static input shape.")
@click.option("--devices", help="MODEL only: processors to place on, e.g. cpu,gpu [default: the chip's].")
def command(source: Path, as_json: bool, svg: Path | None, moves: bool, time_limit: float, **given: Any) -> None:
    """Say why each op of PLAN (a compiled bundle) or MODEL (.onnx, placed in memory) runs where it does: its
    predicted ms on each processor, and for every other processor why not (it cannot run it, a --place rule,
    fused into another op, or what moving it would cost: the plan re-solved with the op forced there).

    \b
    Examples:
      ragc explain plan/
      ragc explain plan/ --json | jq '.ops[] | select(.chosen == "cpu") | .name'
      ragc explain model.onnx --target ryzen-ai-9-hx-370 --svg graph.svg
    """
    from ragc.cli import explain_show

    if svg:
        writable_file(svg, "--svg")
    if not source.exists():
        raise UsageError(f"{str(source)!r} does not exist; give a plan folder (ragc compile -o) or an .onnx model")
    analysis = None
    if source.is_dir():
        extra = [flag for key, flag in MODEL_ONLY.items() if given[key] not in (None, ())]
        if extra:
            raise UsageError(f"{extra[0]} goes with a MODEL; a plan was placed when it was compiled")
        facts, doc, e = _plan_mode(source, moves, time_limit)
    else:
        given["objective"] = given["objective"] or "latency"
        facts, doc, e, analysis = _model_mode(source, given, moves, time_limit)
    npu = explain_show.npu_summary(e)
    if svg:
        from ragc.cli.graph_svg import graph_svg

        svg.write_text(graph_svg(doc, facts["what"]), encoding="utf-8")
    if as_json:
        echo_json({**facts, **e, "npu": npu, "model_analysis": analysis})
        return
    if analysis is not None:
        from ragc.cli.explain_npu import show_model_analysis

        show_model_analysis(source, explain_show.chip_label(facts["chip_id"]), analysis)
    explain_show.show(facts, e, None if analysis is not None else npu)
    if svg:
        say(f"graph written to {svg}")
