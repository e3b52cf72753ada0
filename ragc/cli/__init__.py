"""The `ragc` command line: compile, run, inspect and validate plan bundles."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path

import click
import numpy as np

from ragc.errors import RagcError, UsageError
from ragc.placement.solve import OBJECTIVES, SOLVERS


def friendly_errors(fn):
    """Turn our errors into one line on stderr and a non-zero exit; never a traceback (RAGC_DEBUG=1 shows it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from runtime_min.errors import RuntimeMinError

        try:
            return fn(*args, **kwargs)
        except (RagcError, RuntimeMinError) as exc:
            if os.environ.get("RAGC_DEBUG"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug of ours: still one line, with how to get the details
            if os.environ.get("RAGC_DEBUG"):
                traceback.print_exc()
            click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with RAGC_DEBUG=1 and report it)", err=True)
            sys.exit(3)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ragc")
def main() -> None:
    """ragc: compile an ONNX model into a plan that runs across the CPU, a Vulkan GPU and an XDNA NPU."""


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write."
)
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
@friendly_errors
def compile_cmd(
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
) -> None:
    """Compile MODEL (.onnx) into a plan bundle."""
    from ragc.cli.report import print_partitions
    from ragc.frontend import parse_shapes
    from ragc.pipeline import compile_model

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
    )
    print_partitions(result.bundle, verify_hashes=False)  # just written: no need to hash it all again
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items())
    click.echo(f"wrote {result.bundle} ({len(result.partitions)} partitions; {stages})")


@main.command("run")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option(
    "--input", "inputs", multiple=True, metavar="NAME=FILE.npy", help="Input array (repeatable); random if omitted."
)
@click.option(
    "--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Write each output as NAME.npy here."
)
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1), help="Runs to time; prints the median.")
@click.option("--stream", "frames", type=click.IntRange(1), help="Run N frames as a stream; prints frames/s.")
@click.option("--depth", default=2, show_default=True, type=click.IntRange(1), help="Frames in flight with --stream.")
@click.option("--trace", type=click.Path(dir_okay=False, path_type=Path), help="Write a Chrome/Perfetto trace here.")
@click.option("--record", is_flag=True, help="Add the measured partition times to this chip's personality.")
@click.option("--npu", type=click.Choice(["xrt", "sim"]), help="NPU backend [default: RAGC_NPU, else xrt].")
@click.option("--seed", default=0, show_default=True, help="Seed for random inputs.")
@friendly_errors
def run_cmd(
    plan: Path,
    inputs: tuple[str, ...],
    output_dir: Path | None,
    repeat: int,
    frames: int | None,
    depth: int,
    trace: Path | None,
    record: bool,
    npu: str | None,
    seed: int,
) -> None:
    """Run PLAN on given (or random) inputs; print outputs, per-partition times and the median latency."""
    import runtime_min
    from ragc.cli import runner
    from ragc.cli.report import median_ms, random_feeds

    options = {"timestamps": trace is not None} | ({"npu": npu} if npu else {})
    loaded = runtime_min.load(plan, **options)
    feeds = random_feeds(loaded.inputs, seed) | _read_inputs(inputs)
    if frames:
        rate = runner.timed_stream(loaded, feeds, frames, depth, trace)
        click.echo(f"stream of {frames} frames (depth {depth}): {rate:.1f} frames/s")
        return
    outputs, seconds, steps = runner.timed_runs(loaded, feeds, repeat, trace)
    for name, value in outputs.items():
        click.echo(f"{name}: {value.dtype}{list(value.shape)} min {value.min():.6g} max {value.max():.6g}")
        if output_dir:
            output_dir.mkdir(parents=True, exist_ok=True)
            np.save(output_dir / f"{name.replace('/', '_')}.npy", value)
    medians = runner.step_medians(steps)
    runner.print_step_table(loaded, medians)
    predicted = loaded.manifest.get("predicted_ms")
    shown = "" if predicted is None else f" (predicted {predicted:.3f} ms)"
    click.echo(f"median latency over {repeat} run(s): {median_ms(seconds):.3f} ms{shown}")
    if trace:
        click.echo(f"trace written to {trace} (open it in ui.perfetto.dev or chrome://tracing)")
    if record:
        click.echo(f"recorded {runner.record(plan, loaded, medians)} partition timings into this chip's personality")


@main.command("inspect")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--timeline", type=click.Path(dir_okay=False, path_type=Path), help="Write the predicted timeline SVG.")
@friendly_errors
def inspect_cmd(plan: Path, as_json: bool, timeline: Path | None) -> None:
    """Show PLAN's partitions: processor, op count, predicted time."""
    from ragc.cli.report import plan_summary, print_partitions, write_timeline

    if as_json:
        click.echo(json.dumps(plan_summary(plan), indent=1, sort_keys=True))
    else:
        print_partitions(plan)
    if timeline:
        write_timeline(plan, timeline)
        click.echo(f"timeline written to {timeline}", err=as_json)


@main.command("simulate")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print {predicted_ms, energy_mj, partitions: [...]} as JSON.")
@friendly_errors
def simulate_cmd(plan: Path, as_json: bool) -> None:
    """Print PLAN's predicted timeline and energy on the chip it was compiled for (a target needs no hardware),
    against each processor alone."""
    from ragc.cli.report import print_simulation, simulation_summary

    if as_json:
        click.echo(json.dumps(simulation_summary(plan), indent=1, sort_keys=True))
    else:
        print_simulation(plan)


@main.command("validate")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--model", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The original .onnx.")
@click.option("--rtol", default=1e-4, show_default=True, help="Relative tolerance.")
@click.option("--atol", default=1e-5, show_default=True, help="Absolute tolerance.")
@click.option("--seed", default=0, show_default=True, help="Seed for random inputs.")
@friendly_errors
def validate_cmd(plan: Path, model: Path, rtol: float, atol: float, seed: int) -> None:
    """Compare PLAN against onnxruntime on the original MODEL with random inputs; exit 1 beyond tolerance."""
    from ragc.cli.validate import compare_with_onnxruntime

    report = compare_with_onnxruntime(plan, model, rtol=rtol, atol=atol, seed=seed)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(1)


def _read_inputs(specs: tuple[str, ...]) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in specs:
        name, sep, file = spec.rpartition("=")
        if not sep or not name:
            raise UsageError(f"bad --input {spec!r}: write NAME=FILE.npy")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read --input {name} from {file!r} ({exc}); give a .npy file") from None
    return feeds


def _add_profile_commands() -> None:
    from ragc.cli.explain import explain
    from ragc.cli.profile import costmodel, profile
    from ragc.cli.selftest import selftest

    for command in (profile, costmodel.commands["eval"], explain, selftest):
        command.callback = friendly_errors(command.callback)
    for command in (profile, costmodel, explain, selftest):
        main.add_command(command)


_add_profile_commands()

if __name__ == "__main__":
    main()
