"""The held-out calibration checks: published NPU measurements reproduced by `ragc simulate` on the same workloads,
built as ONNX models here, compiled with `--devices npu` for the target of the chip measured. None of these
figures sets a constant of the model (docs/npu.md lists the ones that do); every result is simulated.

    python -m bench.npu.calibrate [--out DIR] [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.npu.common import ROOT, compile_and_simulate, device_span_ms, progress, write_region
from ragc.profiler import workloads as models

TAKA = "Taka et al., *Striking the Balance: GEMM Performance Optimization Across Generations of Ryzen AI NPUs*, 2025 (https://arxiv.org/abs/2512.13282)"  # noqa: E501
AIR = "mlir-air programming_examples/llama32_1b/docs/profile.md (Xilinx/mlir-air), measured on Strix (NPU2)"
GEMM_SIZE = 4096
LM_HEAD_PARTS = 8  # mlir-air's LM head: 8 vocabulary slices in one ELF


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    published: float
    unit: str
    source: str
    why: str = ""  # where the simulated figure falls outside +-25%: the reason


CHECKS = [
    Check("XDNA2 GEMM bf16", "ryzen-ai-9-hx-370", 14.71, "TOPS", TAKA),
    Check("XDNA2 GEMM int8", "ryzen-ai-9-hx-370", 38.05, "TOPS", TAKA),
    Check(
        "XDNA1 GEMM bf16",
        "ryzen-7-7840u",
        3.14,
        "TOPS",
        TAKA,
        "at the target's figures (1.6 GHz, the top DPM level; 33.3 GB/s DDR, an estimate scaled from XDNA2's "
        "memcpy) the model is 57 % high; it lands on both XDNA1 figures (-2 %, +4 %) at the 1.024 GHz DPM level "
        "with 20 GB/s, which suggests the measured machine ran below the top level, but neither figure is sourced "
        "for it, so the target keeps its sourced values (fitting them to the held-out figure would be circular)",
    ),
    Check("XDNA1 GEMM int8", "ryzen-7-7840u", 6.76, "TOPS", TAKA, "as for XDNA1 bf16 (clock level and DDR)"),
    Check(
        "Llama-3.2-1B bf16 prefill, 2048 tokens (mlir-air)",
        "ryzen-ai-9-hx-370",
        1.27,
        "s",
        AIR,
        "the model prices kernels at what the array and a tuned tiling reach (the GEMM checks above), mlir-air's "
        "kernels run far below that: its profile gives o_ffn 41 ms/layer (model: about 13 ms) and flash_attn 22 "
        "ms/layer (model: about 1 ms; mlir-air's attention reaches 0.8 TFLOPS counting the causal half). The gap "
        "is the implementation's efficiency, which no architecture figure gives",
    ),
    Check(
        "Llama-3.2-1B bf16 prefill, 2048 tokens (IRON)",
        "ryzen-ai-9-hx-370",
        2.744,
        "s",
        AIR + ", IRON baseline at amd/IRON 2b62dc7",
        "as for mlir-air, plus IRON's runtime syncs and reads back every buffer object, weights included, after "
        "each kernel (same profile): host work the model does not price, since ragc's runtime keeps weights resident",
    ),
]


def _gemm(check: Check, folder: Path) -> float:
    dtype = check.name.split()[-1]
    path = models.save(models.gemm(GEMM_SIZE, dtype), folder / f"gemm_{dtype}.onnx")
    simulated = compile_and_simulate(path, folder / f"plan_{dtype}_{check.target}", check.target, "--devices", "npu")
    return 2 * GEMM_SIZE**3 / (device_span_ms(simulated, "npu") * 1e-3) / 1e12


def _prefill(folder: Path, cache: dict) -> float:
    """The 16 layers and final RMSNorm at 2048 tokens, plus the last token's LM head (8 GEMV slices)."""
    if "prefill" not in cache:
        stack = models.save(models.llama(2048, 16), folder / "llama_prefill.onnx")
        head = models.save(models.lm_head_slice(), folder / "lm_head_slice.onnx")
        target = "ryzen-ai-9-hx-370"
        layers = compile_and_simulate(stack, folder / "plan_prefill", target, "--devices", "npu")
        lm_head = compile_and_simulate(head, folder / "plan_lm_head", target, "--devices", "npu")
        cache["prefill"] = (device_span_ms(layers, "npu") + LM_HEAD_PARTS * device_span_ms(lm_head, "npu")) / 1e3
    return cache["prefill"]


def run(folder: Path) -> list[dict]:
    rows, cache = [], {}
    with progress() as bar:
        task = bar.add_task("held-out checks (compile + simulate)", total=len(CHECKS))
        for check in CHECKS:
            simulated = _gemm(check, folder) if "GEMM" in check.name else _prefill(folder, cache)
            error = (simulated - check.published) / check.published * 100
            rows.append({**check.__dict__, "simulated": round(simulated, 3), "error_pct": round(error, 1)})
            bar.advance(task)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| held-out figure | target | published | simulated | error | within ±25 % | citation | why not |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = abs(r["error_pct"]) <= 25
        lines.append(
            f"| {r['name']} | {r['target']} | {r['published']} {r['unit']} | {r['simulated']} {r['unit']} "
            f"(simulated) | {r['error_pct']:+.1f} % | {'yes' if ok else 'no'} | {r['source']} | "
            f"{'' if ok else r['why']} |"
        )
    sizes = f"GEMMs: square {GEMM_SIZE}^3, bf16 as float32 MatMul (bf16 in, bf16 out), int8 as QLinearMatMul (int8 "
    sizes += "in and out); TOPS over the NPU partition's simulated span (kernel, command, host sync)."
    return "\n".join(lines) + f"\n\n{sizes} Generated by `python -m bench.npu.calibrate --write-doc`."


def constants_table() -> str:
    """Every figure of the XDNA model and the power section, per target, with its source and stated range."""
    from ragc.costmodel.npu import NPU_KEYS
    from ragc.targets import load_target

    hx, px = load_target("ryzen-ai-9-hx-370"), load_target("ryzen-7-7840u")
    paths = [f"npu.{k}" for k in NPU_KEYS] + [
        f"power.{d}.{k}" for d in ("cpu", "gpu", "npu") for k in ("active_w", "idle_w")
    ]
    lines = [
        "| figure | HX 370 | 7840U | range (HX 370 / 7840U) | source (the 7840U's added where it differs) |",
        "|---|---|---|---|---|",
    ]
    for path in paths:
        values = []
        for data in (hx, px):
            node = data
            for part in path.split("."):
                node = node[part]
            values.append(json.dumps(node))
        ranges = " / ".join(str(d.get("uncertainty", {}).get(path, "-")) for d in (hx, px))
        source = hx["sources"][path].replace("|", "/")
        if values[0] != values[1]:
            source += f" **7840U:** {px['sources'][path].replace('|', '/')}"
        lines.append(f"| `{path}` | {values[0]} | {values[1]} | {ranges} | {source} |")
    return "\n".join(lines) + "\n\nGenerated from ragc/targets/*.json by `python -m bench.npu.calibrate --write-doc`."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Keep the models and plans here [default: a temporary folder].")
    parser.add_argument("--write-doc", action="store_true", help="Rewrite the calibration table in docs/npu.md.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.out or Path(tmp))
    (ROOT / "docs" / "results").mkdir(exist_ok=True)
    (ROOT / "docs" / "results" / "npu-calibration.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    print(table)
    if args.write_doc:
        write_region("calibration", table)
        write_region("constants", constants_table())


if __name__ == "__main__":
    main()
