"""Benchmark one model with every system in one process; each finished system is appended as a JSON line.

Run by bench/run.py in a child process (a crash or a hang costs one model, not the run):
    python -m bench.worker MODEL_NAME --out records.jsonl [--systems ...] [--runs 20] [--warmup 5]

The first line written describes the model (no "system" key): its path, or why it could not be made.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from bench import breakdown, models, systems
from bench.measure import peak_rss_mb, reset_peak_rss, time_runs
from ragc.cli.report import random_feeds
from ragc.cli.validate import compare_outputs

RTOL, ATOL = 1e-3, 1e-4  # ATOL is relative to each output's largest magnitude (random weights can make it tiny)


def bench_model(
    model: Path, name: str, chosen: list[systems.System], args: argparse.Namespace, emit: Callable[[dict], None]
) -> None:
    """Measure each system on `model` with the same random feeds; call `emit(record)` as each one finishes."""
    feeds = random_feeds(models.input_specs(model), args.seed)
    names = models.output_names(model)
    reference_session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    reference = dict(zip(names, reference_session.run(names, feeds), strict=True))
    del reference_session
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        for system in chosen:
            record: dict[str, Any] = {"model": name, "system": system.name, "kind": system.kind}
            reason = system.unavailable()
            if reason:
                emit({**record, "status": "skipped", "note": reason})
                continue
            start = time.perf_counter()
            try:
                record.update(_measure(system, model, workdir, names, feeds, reference, args))
            except Exception as exc:  # one system failing must not stop the others: record it and go on
                if args.verbose:
                    traceback.print_exc()
                record.update(status="failed", note=one_line(exc))
            emit({**record, "wall_s": round(time.perf_counter() - start, 2)})


def _measure(
    system: systems.System,
    model: Path,
    workdir: Path,
    names: list[str],
    feeds: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Prepare, check against onnxruntime, time, and (ragc auto) break down one system on one model."""
    rss_reset = reset_peak_rss()
    prepared = system.prepare(model, workdir, names)
    try:
        outputs = prepared.run(feeds)
        errors = [
            compare_outputs({n: outputs[n]}, {n: want}, RTOL, ATOL * float(np.abs(want).max(initial=0)))
            for n, want in reference.items()
        ]
        timing = time_runs(lambda: prepared.run(feeds), args.runs, args.warmup, args.cap)
        record = {
            "status": "ok",
            **prepared.info,
            **timing.summary(),
            "peak_rss_mb": peak_rss_mb(),
            "peak_rss_scope": "system" if rss_reset else "process",
            "max_abs_err": max((e[0] for c in errors for e in c.errors.values()), default=0.0),
            "max_rel_err": max((e[1] for c in errors for e in c.errors.values()), default=0.0),
            "agrees": all(c.ok for c in errors),
        }
        if timing.note:
            record["note"] = timing.note
        if system.name == "ragc-auto" and prepared.plan is not None:
            try:
                record.update(_breakdown(prepared.plan, model, feeds, workdir))
                record.update(_trace(prepared.plan, feeds, args.trace_dir, f"{model.stem}.ragc-auto.trace.json"))
            except Exception as exc:  # the measurement stands without its breakdown: say why that is missing
                record["breakdown_note"] = one_line(exc)
        return record
    finally:
        prepared.close()


def _breakdown(plan: Any, model: Path, feeds: dict[str, np.ndarray], workdir: Path) -> dict[str, Any]:
    parts = breakdown.partition_times(plan, feeds)
    if not parts:
        return {}
    profile = breakdown.ort_op_profile(model, feeds, workdir)
    return {"partition_times": parts, "costliest": breakdown.costliest(parts, profile)}


def _trace(plan: Any, feeds: dict[str, np.ndarray], trace_dir: Path | None, name: str) -> dict[str, Any]:
    """One more run written as a Chrome/Perfetto trace (runtime_min's `trace=`), when a folder is given."""
    if trace_dir is None:
        return {}
    trace_dir.mkdir(parents=True, exist_ok=True)
    plan.run(feeds, trace=trace_dir / name)
    return {"trace": f"{trace_dir.name}/{name}"}


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text[:400]}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a name from bench.models.model_set()")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to append records to")
    parser.add_argument("--systems", default=None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cap", type=float, default=30.0, help="seconds of timed runs per system at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace-dir", type=Path, help="write a runtime trace of ragc auto here")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def emit(record: dict[str, Any]) -> None:
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if "system" in record:
            detail = record.get("median_ms", record.get("note", ""))
            print(f"  {record['system']:<14} {record['status']:<8} {detail}", file=sys.stderr, flush=True)

    model = models.select(models.model_set(with_torch=True), args.name)[0]
    try:
        path = models.materialize(model)
    except Exception as exc:  # e.g. a torchvision export that fails: the model is skipped with the reason
        emit({"model": model.name, "status": "failed", "note": f"cannot make the model: {one_line(exc)}"})
        return 0
    emit({"model": model.name, "path": _relative(path)})
    try:
        bench_model(path, model.name, systems.select(args.systems), args, emit)
    except Exception as exc:  # the model itself is unusable (onnxruntime cannot run it, symbolic shapes...)
        emit({"model": model.name, "status": "failed", "note": one_line(exc)})
    return 0


def _relative(path: Path) -> str:
    """The path from the repository root where it lies inside it (results carry no absolute paths)."""
    try:
        return str(path.resolve().relative_to(models.ROOT))
    except ValueError:
        return path.name


if __name__ == "__main__":
    sys.exit(main())
