"""Benchmark ragc (auto, cpu-only, gpu-only) against ONNX Runtime CPU and IREE on the model set.

    python bench/run.py [--models resnet18,tinynet] [--runs 20] [--warmup 5] [--out bench/results] [--systems ...]

Each model runs in a child process (bench/worker.py) with a time limit; results.json and results.md are rewritten
after every model, so a run that is cut short still leaves everything measured so far.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import models, systems, tables  # noqa: E402
from bench.env import environment  # noqa: E402
from bench.plot import plot_latency  # noqa: E402

MIN_MODEL_S = 15.0  # do not start a model with less budget left than this
PERSONALITY = "from ragc.profiler.profile import personality_or_profile; print(personality_or_profile().devices)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma list of model names (default: all)")
    parser.add_argument("--systems", help=f"comma list from {', '.join(systems.SYSTEMS)} (default: all)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per system")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--out", type=Path, default=models.ROOT / "bench" / "results", help="results folder")
    parser.add_argument("--budget", type=float, default=0, help="seconds for the whole run (0: no limit)")
    parser.add_argument("--model-timeout", type=float, default=600, help="seconds per model at most")
    parser.add_argument("--cap", type=float, default=30, help="seconds of timed runs per system at most")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torchvision models")
    parser.add_argument(
        "--profile-timeout",
        type=float,
        default=300,
        help="seconds for profiling this chip first, when ragc has no personality for it yet",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    started = time.monotonic()
    deadline = started + args.budget if args.budget > 0 else float("inf")
    notes: list[str] = []
    try:
        chosen = models.select(models.model_set(with_torch=not args.no_torch), args.models)
        systems.select(args.systems)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch_missing = models.torch_available() if any(m.source == "torchvision" for m in chosen) else None
    if torch_missing and not args.models:
        chosen = [m for m in chosen if m.source != "torchvision"]
        notes.append(f"torchvision models skipped: {torch_missing}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "schema": 1,
        "started_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(argv),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in sorted(vars(args).items())},
        "environment": environment(),
        "notes": notes,
        "models": [],
    }
    results["personality"] = warm_personality(min(args.profile_timeout, max(deadline - time.monotonic(), 1)))
    for model in chosen:
        left = deadline - time.monotonic()
        if left < MIN_MODEL_S:
            results["models"].append(
                {
                    "name": model.name,
                    "source": model.source,
                    "systems": {},
                    "status": "skipped",
                    "note": "time budget spent",
                }
            )
            continue
        print(f"[{time.monotonic() - started:6.0f}s] {model.name}", file=sys.stderr, flush=True)
        results["models"].append(run_model(model, args, min(left, args.model_timeout)))
        write_results(results, args.out)
        if results["models"][-1]["status"] == "stopped":
            break
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    note = plot_latency(results, args.out / "latency.png")
    if note:
        notes.append(note)
    write_results(results, args.out)
    print((args.out / "results.md").read_text(), file=sys.stderr)
    return 0 if not results["models"] or results["models"][-1]["status"] != "stopped" else 128 + signal.SIGTERM


class Stopped(Exception):
    """SIGTERM arrived (e.g. from `timeout`): stop the running model, keep what it measured, write the results."""


def _stop(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # `timeout` signals the process and then its group: stop once
    raise Stopped


def warm_personality(timeout: float) -> dict[str, Any]:
    """Load (profiling it first if absent) ragc's personality of this chip, so no compile time includes that."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", PERSONALITY],
            cwd=models.ROOT,
            env=_child_env(),
            timeout=timeout,
            capture_output=True,
            text=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.monotonic() - start, 1)}
    last = (done.stdout.strip() or done.stderr.strip() or "-").splitlines()[-1]
    return {
        "status": "ok" if done.returncode == 0 else "failed",
        "seconds": round(time.monotonic() - start, 1),
        "devices" if done.returncode == 0 else "note": last[:300],
    }


def _child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(models.ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_model(model: models.BenchModel, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Run bench.worker on one model in a child process; whatever it recorded before a crash or time-out is kept."""
    records = args.out / "records" / f"{model.name}.jsonl"
    records.parent.mkdir(parents=True, exist_ok=True)
    records.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "bench.worker",
        model.name,
        "--out",
        str(records),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--cap",
        str(args.cap),
        "--seed",
        str(args.seed),
        "--trace-dir",
        str(args.out / "traces"),
    ]
    argv += ["--systems", args.systems] if args.systems else []
    entry: dict[str, Any] = {"name": model.name, "source": model.source, "status": "ok"}
    child = subprocess.Popen(argv, cwd=models.ROOT, env=_child_env(), start_new_session=True)
    try:
        rc = child.wait(timeout=timeout)
        if rc:
            entry.update(status="failed", note=f"worker exited with status {rc}")
    except subprocess.TimeoutExpired:
        entry.update(status="timeout", note=f"stopped after {timeout:.0f} s; systems not listed did not finish")
    except Stopped:
        entry.update(status="stopped", note="the benchmark was stopped (SIGTERM) while this model ran")
    finally:
        if child.poll() is None:  # timed out, or this process is being stopped: stop the worker's whole group
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    found = [json.loads(line) for line in records.read_text().splitlines()] if records.exists() else []
    for meta in (r for r in found if r.get("system") is None):  # the model's path, or why it failed as a whole
        entry.update({k: v for k, v in meta.items() if k in ("path", "status", "note")})
    entry["systems"] = {r["system"]: r for r in found if r.get("system")}
    entry["summary"] = tables.summarize(entry["systems"])
    return entry


def write_results(results: dict[str, Any], out: Path) -> None:
    """results.json and results.md, each replaced atomically."""
    _write(out / "results.json", json.dumps(results, indent=1, sort_keys=True) + "\n")
    gpu = (
        "\nGPU numbers here come from a software Vulkan device (lavapipe on the CPU): they are not GPU performance.\n"
        if results["environment"].get("software_gpu")
        else ""
    )
    notes = "".join(f"- {n}\n" for n in results["notes"])
    text = (
        f"# ragc benchmark ({results['started_utc']})\n\n`{results['command']}`\n{gpu}\n"
        f"Median latency in ms, batch 1.\n\n{tables.latency_table(results)}\n## Details\n\n"
        f"{tables.detail_table(results)}\n{notes}"
    )
    _write(out / "results.md", text)


def _write(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
