"""`ragc validate PLAN --model MODEL`: run a plan and the original model under onnxruntime on the same fresh random
inputs; say where every partition ran (naming fallbacks), compare each output at the tolerance of the processors
that computed it, and exit 1 beyond it (or, with --strict, when any partition fell back)."""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from ragc.cli.compare import Tolerances, compare_outputs, compare_plan, computed_on
from ragc.cli.output import echo_json, say, warn
from ragc.cli.params import TOLERANCE
from ragc.cli.report import random_feeds
from ragc.errors import ModelError

__all__ = ["command", "compare_outputs", "validate"]  # compare_outputs: bench/worker.py compares through here


def validate(
    plan_dir: Path, model: Path, tol: Tolerances, npu: str | None = None, seed: int = 0, any_model: bool = False
) -> dict[str, Any]:
    """The validation as data: partitions (planned on, ran on, fallback reason), outputs (errors, tolerance used,
    processors), and whether every output is within its tolerance."""
    import onnxruntime

    import runtime_min

    if not model.is_file():
        raise ModelError(f"--model {str(model)!r} does not exist; give the .onnx the plan was compiled from")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", runtime_min.RuntimeMinWarning)  # reported below, partition by partition
        plan = runtime_min.load(plan_dir, npu=npu)
    if hashlib.sha256(model.read_bytes()).hexdigest() != plan.manifest.get("model_sha256") and not any_model:
        raise ModelError(
            f"--model {str(model)!r} is not the model this plan was compiled from (sha256 differs); "
            "give that model, or pass --any-model to compare anyway"
        )
    feeds = random_feeds(plan.inputs, seed)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's own notes on the user's model (unused initializers) are not ours
    reference = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    want = dict(zip(names, reference.run(names, feeds), strict=True))
    got = plan.run(feeds)
    ran_on = {s["partition"]: s["device"] for s in plan.last_step_times()}
    result = compare_plan(got, want, computed_on(plan.schedule, ran_on), tol)
    partitions = [
        {
            "id": p["id"],
            "planned_on": p["device"],
            "ran_on": ran_on.get(p["id"]),
            "fallback": plan.fallbacks.get(p["device"]) if ran_on.get(p["id"]) != p["device"] else None,
        }
        for p in plan.schedule["partitions"]
    ]
    processors = computed_on(plan.schedule, ran_on)
    return {
        "plan": str(plan_dir),
        "model": str(model),
        "seed": seed,
        "npu": plan.options.npu,
        "partitions": partitions,
        "fell_back": sorted({p["planned_on"] for p in partitions if p["fallback"] is not None}),
        "outputs": [
            {
                "name": name,
                "computed_on": sorted(processors.get(name, set())),
                "max_abs_err": abs_err,
                "max_rel_err": rel_err,
                "rtol": result.tolerances[name][0],
                "atol": result.tolerances[name][1],
                "within": within,
            }
            for name, (abs_err, rel_err, within) in result.errors.items()
        ],
        "ok": result.ok,
    }


def _show(report: dict[str, Any], strict: bool) -> None:
    simulated = (
        " (the simulator: the NPU's bf16 numerics on the host, no NPU hardware)" if report["npu"] == "sim" else ""
    )
    for p in report["partitions"]:
        where = p["ran_on"] + (simulated if p["ran_on"] == "npu" else "")
        where = where if p["fallback"] is None else f"its CPU fallback ({p['fallback']})"
        say(f"{p['id']} (planned on {p['planned_on']}): ran on {where}")
    for o in report["outputs"]:
        on = ", ".join(o["computed_on"]) or "no partition"
        verdict = "ok" if o["within"] else "MISMATCH"
        click.echo(
            f"{o['name']} (computed on {on}): max abs err {o['max_abs_err']:.3g}, max rel err {o['max_rel_err']:.3g} "
            f"-> {verdict} (rtol {o['rtol']:.3g}, atol {o['atol']:.3g})"
        )
    for processor in report["fell_back"]:
        count = sum(1 for p in report["partitions"] if p["planned_on"] == processor and p["fallback"])
        fix = "use --npu sim, or " if processor == "npu" and report["npu"] != "sim" else ""
        action = "failing (--strict)" if strict else f"{fix}pass --strict to fail"
        warn(f"{processor} not validated: its {count} partition(s) ran on the CPU fallback; {action}")
    click.echo(_verdict(report, strict))


def _verdict(report: dict[str, Any], strict: bool) -> str:
    if not report["ok"]:
        return "FAIL: outputs beyond tolerance"
    if strict and report["fell_back"]:
        return f"FAIL (--strict): {', '.join(report['fell_back'])} fell back to the CPU"
    checked = sorted({p["ran_on"] for p in report["partitions"] if p["ran_on"]})
    return f"PASS ({len(report['outputs'])} output(s) within tolerance; ran on {', '.join(checked) or 'nothing'})"


def _tolerance(flag: str, default: float, text: str):
    return click.option(flag, default=default, show_default=True, type=TOLERANCE, help=text)


@click.command("validate")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--model", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The original .onnx.")
@_tolerance("--rtol", 1e-4, "Relative tolerance (CPU, GPU: fp32).")
@_tolerance("--atol", 1e-5, "Absolute tolerance (CPU, GPU).")
@_tolerance("--npu-rtol", 2e-2, "Relative tolerance where the NPU (bf16) took part.")
@_tolerance("--npu-atol", 1e-2, "Absolute tolerance with the NPU, times the output's largest magnitude.")
@click.option("--npu", type=click.Choice(["xrt", "sim"]), help="NPU backend [default: RAGC_NPU, else xrt].")
@click.option("--strict", is_flag=True, help="Fail when any partition ran from its CPU fallback.")
@click.option("--seed", default=0, show_default=True, help="Seed for random inputs.")
@click.option("--any-model", is_flag=True, help="Compare even when MODEL is not the one the plan was compiled from.")
@click.option("--json", "as_json", is_flag=True, help="Print the validation as JSON.")
def command(
    plan: Path,
    model: Path,
    rtol: float,
    atol: float,
    npu_rtol: float,
    npu_atol: float,
    npu: str | None,
    strict: bool,
    seed: int,
    any_model: bool,
    as_json: bool,
) -> None:
    """Compare PLAN against onnxruntime on the original MODEL with random inputs: where each partition ran (CPU
    fallbacks named), each output at the tolerance of the processors that computed it; exit 1 beyond it.

    \b
    Examples:
      ragc validate plan/ --model model.onnx
      ragc validate plan-hx370/ --model model.onnx --npu sim --strict
      ragc validate plan/ --model model.onnx --json | jq .ok
    """
    report = validate(plan, model, Tolerances(rtol, atol, npu_rtol, npu_atol), npu, seed, any_model)
    failed = not report["ok"] or (strict and bool(report["fell_back"]))
    if as_json:
        echo_json(report | {"strict": strict, "passed": not failed})
    else:
        _show(report, strict)
    if failed:
        sys.exit(1)
