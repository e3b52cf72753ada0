"""`ragc run PLAN`: run a plan on given (or random) inputs as a benchmark: warm-up, a number of runs or a time
budget, latency statistics, measured against predicted per partition (and per stage for streams), with the
prediction labelled by the chip it was made for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from ragc.cli.output import console, echo_json, say, verbosity
from ragc.cli.params import POSITIVE_SECONDS
from ragc.cli.paths import output_file_name, read_array, writable_file
from ragc.errors import UsageError


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
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(0), help="Untimed runs first.")
@click.option("--repeat", type=click.IntRange(1), help="Timed runs [default: 10, or as many as fit --seconds].")
@click.option("--seconds", type=POSITIVE_SECONDS, help="Time runs for this long instead of a count.")
@click.option("--stream", "frames", type=click.IntRange(1), help="Run N frames as a stream; prints frames/s.")
@click.option("--depth", default=2, show_default=True, type=click.IntRange(1), help="Frames in flight with --stream.")
@click.option("--trace", type=click.Path(dir_okay=False, path_type=Path), help="Write a Chrome/Perfetto trace here.")
@click.option("--record", is_flag=True, help="Add the measured partition times to this chip's personality.")
@click.option("--npu", type=click.Choice(["xrt", "sim"]), help="NPU backend [default: RAGC_NPU, else xrt].")
@click.option("--seed", default=0, show_default=True, help="Seed for random inputs.")
@click.option("--generate", "generate", type=click.IntRange(1), help="LLM plan: generate N tokens after --prompt-ids.")
@click.option("--prompt-ids", type=click.Path(dir_okay=False, path_type=Path), help="Token ids (.npy or text).")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def command(
    plan: Path,
    inputs: tuple[str, ...],
    output_dir: Path | None,
    warmup: int,
    repeat: int | None,
    seconds: float | None,
    frames: int | None,
    depth: int,
    trace: Path | None,
    record: bool,
    npu: str | None,
    seed: int,
    generate: int | None,
    prompt_ids: Path | None,
    as_json: bool,
) -> None:
    """Run PLAN on given (or random) inputs and time it: latency min/median/mean/p90/p99/max and runs/s, measured
    against predicted per partition; with --stream, frames/s and per pipeline stage.

    \b
    Examples:
      ragc run plan/ --repeat 50
      ragc run plan/ --seconds 10 --json > bench.json
      ragc run plan/ --input image=x.npy --output-dir out/
      ragc run plan/ --stream 200 --depth 2 --trace trace.json
      ragc run llm-plan/ --generate 128 --prompt-ids prompt.txt
    """
    import runtime_min
    from ragc.cli import run_report as report
    from ragc.cli import runner
    from ragc.cli.report import random_feeds
    from ragc.personality.store import current_chip_id

    if generate:
        from ragc.cli.llm import echo_lines, generate_lines, run_generate

        data = run_generate(plan, generate, prompt_ids, {"npu": npu})
        echo_json(data) if as_json else echo_lines(generate_lines(data))
        return
    if repeat is not None and seconds is not None:
        raise UsageError("give --repeat or --seconds, not both")
    if frames and (repeat is not None or seconds is not None):
        raise UsageError("--stream N sets how many frames run; leave out --repeat and --seconds")
    if trace:
        writable_file(trace, "--trace")
    given = dict(read_array(spec) for spec in inputs)
    loaded = runtime_min.load(plan, timestamps=trace is not None, npu=npu)
    feeds = random_feeds(loaded.inputs, seed) | given
    if frames:
        timed = runner.timed_stream(loaded, feeds, frames, depth, warmup, trace)
    else:
        timed = runner.timed_runs(loaded, feeds, warmup, repeat or (None if seconds else 10), seconds, trace)
    rows = report.partition_rows(loaded, timed)
    data: dict[str, Any] = {
        "plan": str(plan),
        "prediction": report.prediction(loaded, current_chip_id()),
        "warmup": warmup,
        "partitions": rows,
        "fallbacks": dict(loaded.fallbacks),
        "outputs": {n: {"dtype": str(v.dtype), "shape": list(v.shape)} for n, v in timed.outputs.items()},
    }
    if frames:
        data["stream"] = {"frames": frames, "depth": depth, "frames_per_s": frames / timed.elapsed_s}
        data["stages"] = report.stage_rows(loaded, rows)
    else:
        data["runs"], data["seconds"] = len(timed.seconds), timed.seconds
        data["latency_ms"] = report.latency_stats(timed.seconds)
    if output_dir:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, value in timed.outputs.items():
            np.save(output_dir / output_file_name(name), value, allow_pickle=False)
    if record:
        data["recorded"] = runner.record(plan, loaded, runner.step_medians(timed.steps))
    if as_json:
        echo_json(data)
    else:
        _show(data, timed.outputs)
    if trace:
        click.echo(f"trace written to {trace} (open it in ui.perfetto.dev or chrome://tracing)", err=as_json)


def _show(data: dict[str, Any], outputs: dict[str, np.ndarray]) -> None:
    from ragc.cli import run_report as report

    for name, value in outputs.items():
        say(describe(name, value))
    out = console()
    if verbosity() >= 0:
        out.print(report.partition_table(data["partitions"], "per-partition times (median)"))
    if "stream" in data:
        s = data["stream"]
        if data["stages"] and verbosity() >= 0:
            out.print(report.stage_table(data["stages"]))
        click.echo(f"stream of {s['frames']} frames (depth {s['depth']}): {s['frames_per_s']:.1f} frames/s")
    else:
        click.echo(report.latency_line(data["latency_ms"], data["runs"], data["warmup"]))
        say("each run (ms): " + " ".join(f"{s * 1e3:.3f}" for s in data["seconds"]), level=1)
        if data["prediction"]["kind"] == "slowest stage":
            say("this plan was compiled for throughput (--objective throughput): run it with --stream N for frames/s")
    click.echo(report.prediction_line(data["prediction"]))
    if "recorded" in data:
        click.echo(f"recorded {data['recorded']} partition timings into this chip's personality")
