"""Turn a bench results.json into docs/benchmarks.md: machine, versions, command, tables, and where ragc loses.

python bench/report.py bench/results/results.json [-o docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tables  # noqa: E402


def render(results: dict[str, Any]) -> str:
    """The whole markdown page."""
    env = results["environment"]
    config = results.get("config", {})
    parts = [
        "# ragc benchmarks\n",
        f"Measured {results.get('started_utc', '?')} with `bench/run.py` "
        f"({config.get('runs', '?')} timed runs after {config.get('warmup', '?')} warm-up runs, batch 1, fp32, "
        "random inputs; every system in one process per model, on the same inputs).\n",
        "Regenerate: `bash bench/device.sh` on the GPU machine (results land in `$OUT`), then "
        "`python bench/report.py $OUT/results.json -o docs/benchmarks.md`.\n",
        "## Machine\n",
        _machine(env),
        "## Command\n",
        f"```\n{results.get('command', '?')}\n```\n",
        "## Median latency (ms)\n",
        "`auto / best` is ragc auto placement over the fastest peer (ONNX Runtime or IREE); below "
        f"{tables.TARGET_RATIO} is the goal. `(wrong)` marks outputs that disagree with onnxruntime; `(CPU fallback)` "
        "a plan whose GPU or NPU could not be opened, so those partitions ran on the CPU.\n",
        tables.latency_table(results),
        f"## Where ragc auto is not at or below {tables.TARGET_RATIO}x the best peer\n",
        _losses(results),
        "## All measurements\n",
        tables.detail_table(results),
    ]
    if results.get("notes"):
        parts += ["## Notes\n", "".join(f"- {n}\n" for n in results["notes"])]
    return "\n".join(parts)


def _machine(env: dict[str, Any]) -> str:
    cpu = env.get("cpu", {})
    gpus = "; ".join(g.get("name", "?") for g in env.get("gpus", [])) or "none found by Vulkan"
    lines = [
        f"- CPU: {cpu.get('model', '?')}, {cpu.get('cores', '?')} logical cores",
        f"- GPU (Vulkan): {gpus}",
        f"- NVIDIA driver: {env['nvidia_smi']}" if env.get("nvidia_smi") else "- NVIDIA driver: no nvidia-smi",
        f"- Load average (1, 5, 15 min) when the run started: {env.get('load_average', '?')}",
        f"- Python {env.get('python', '?')} on {env.get('platform', '?')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items()) if v),
    ]
    if env.get("software_gpu"):
        lines.append(
            "- **The GPU here is a software Vulkan device (lavapipe, on the CPU): its numbers check "
            "correctness only and say nothing about GPU performance.**"
        )
    return "\n".join(lines) + "\n"


def _losses(results: dict[str, Any]) -> str:
    """Per model where auto misses the target: the ratio, the plan's partitions and the costliest operators."""
    blocks = []
    for model in results["models"]:
        ratio = model.get("summary", {}).get("auto_vs_best_peer")
        auto = model.get("systems", {}).get("ragc-auto", {})
        if ratio is None:
            why = auto.get("note") or model.get("note") or "not measured"
            blocks.append(f"- **{model['name']}**: no ratio ({why}).")
        elif ratio > tables.TARGET_RATIO:
            blocks.append(_loss(model, auto, ratio))
    return "\n".join(blocks) + "\n" if blocks else "None: ragc auto meets the target on every measured model.\n"


def _loss(model: dict[str, Any], auto: dict[str, Any], ratio: float) -> str:
    summary = model["summary"]
    best = tables.SYSTEM_LABELS.get(summary["best_peer"], summary["best_peer"])
    lines = [
        f"- **{model['name']}**: {ratio:.2f}x {best} ({auto['median_ms']:.3f} vs {summary['best_peer_ms']:.3f} ms)."
    ]
    parts = auto.get("partition_times")
    if parts:
        shown = ", ".join(f"{p['id']} {p['ran_on']} {len(p['ops'])} ops {p['measured_ms']:.3f} ms" for p in parts[:8])
        more = f" (+{len(parts) - 8} more)" if len(parts) > 8 else ""
        lines.append(f"  Partitions: {shown}{more}.")
    costly = auto.get("costliest")
    if costly:
        ops = ", ".join(f"{o['name']} ({o['op_type']}) {o['ms']:.3f} ms" for o in costly["top_ops"])
        types = ", ".join(f"{t['op_type']} {t['ms']:.3f} ms" for t in costly["op_types_cpu_ms"])
        lines.append(
            f"  Most time: partition {costly['partition']} on the {costly['device']} ({costly['measured_ms']:.3f} ms); "
            f"its costliest operators by onnxruntime's CPU profile: {ops or 'none matched'}; by type: {types or '-'}."
        )
    elif not parts:
        lines.append(f"  No per-partition times were recorded ({auto.get('breakdown_note', 'the runtime gave none')}).")
    if auto.get("trace"):
        lines.append(f"  Runtime trace (chrome://tracing, Perfetto): `{auto['trace']}` next to results.json.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results.json written by bench/run.py")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.results} ({exc}); give a results.json from bench/run.py", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(results), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
