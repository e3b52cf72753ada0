"""`ragc run PLAN`: run a plan on given (or random) inputs; print outputs, per-partition times and the latency."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ragc.cli.paths import output_file_name, read_array, writable_file


def describe(name: str, value: np.ndarray) -> str:
    """One line about an output: dtype, shape and range (or its first values where a range means nothing)."""
    head = f"{name}: {value.dtype}{list(value.shape)}"
    if value.size == 0:
        return f"{head} (empty)"
    if value.dtype.kind in "fiub":
        return f"{head} min {value.min():.6g} max {value.max():.6g}"
    return f"{head} first {value.reshape(-1)[:3].tolist()!r}"


@click.command("run")
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
def command(
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
    """Run PLAN on given (or random) inputs; print outputs, per-partition times and the median latency.

    \b
    Examples:
      ragc run plan/ --repeat 50
      ragc run plan/ --input image=x.npy --output-dir out/
      ragc run plan/ --stream 200 --depth 2 --trace trace.json
    """
    import runtime_min
    from ragc.cli import runner
    from ragc.cli.report import median_ms, random_feeds

    if trace:
        writable_file(trace, "--trace")
    given = dict(read_array(spec) for spec in inputs)
    loaded = runtime_min.load(plan, timestamps=trace is not None, npu=npu)
    feeds = random_feeds(loaded.inputs, seed) | given
    if frames:
        rate = runner.timed_stream(loaded, feeds, frames, depth, trace)
        click.echo(f"stream of {frames} frames (depth {depth}): {rate:.1f} frames/s")
        return
    outputs, seconds, steps = runner.timed_runs(loaded, feeds, repeat, trace)
    if output_dir:
        output_dir.mkdir(parents=True, exist_ok=True)
    for name, value in outputs.items():
        click.echo(describe(name, value))
        if output_dir:
            np.save(output_dir / output_file_name(name), value, allow_pickle=False)
    medians = runner.step_medians(steps)
    runner.print_step_table(loaded, medians)
    predicted = loaded.manifest.get("predicted_ms")
    shown = "" if predicted is None else f" (predicted {predicted:.3f} ms)"
    click.echo(f"median latency over {repeat} run(s): {median_ms(seconds):.3f} ms{shown}")
    if trace:
        click.echo(f"trace written to {trace} (open it in ui.perfetto.dev or chrome://tracing)")
    if record:
        click.echo(f"recorded {runner.record(plan, loaded, medians)} partition timings into this chip's personality")
