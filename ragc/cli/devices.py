"""`ragc devices`: what this machine offers ragc and what it lacks, each with the reason and the fix."""

from __future__ import annotations

from typing import Any

import click

from ragc.cli.output import console, echo_json, say, table, verbosity


def _verdicts(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(processor, runs here?, how) per processor."""
    cpu, gpu, npu = data["cpu"], data["gpu"], data["npu"]
    gpu_how = gpu["reason"] or ""
    if gpu["available"]:
        picked = next((d for d in gpu["devices"] if d["picked"]), gpu["devices"][0])
        kind = "software: correct, not fast" if picked["software"] else "hardware"
        gpu_how = f"{picked['name']} ({kind})"
        if not data["glslc"]["available"]:
            gpu_how += f"; but {data['glslc']['reason']}"
    return [
        (
            "cpu",
            "yes" if cpu["available"] else "no",
            f"onnxruntime {cpu['onnxruntime']}" if cpu["available"] else cpu["reason"],
        ),
        ("gpu", "yes" if gpu["available"] else "no", gpu_how),
        (
            "npu",
            "yes" if npu["available"] else "simulated only",
            "XDNA through XRT"
            if npu["available"]
            else f"{npu['reason']}; `--npu sim` runs the simulator (times simulated)",
        ),
    ]


def show(data: dict[str, Any]) -> None:
    out = console()
    summary = table("processor", "runs here", "how / what is missing", title="processors on this machine")
    for row in _verdicts(data):
        summary.add_row(*row)
    out.print(summary)
    cpu = data["cpu"]
    say(f"cpu: {cpu['model']}, {cpu['cores']} logical cores, ISA {' '.join(cpu['isa']) or '-'}")
    if cpu["available"]:
        providers = ", ".join(cpu["providers"])
        say(f"onnxruntime {cpu['onnxruntime']}: providers {providers} (ragc uses {cpu['used_provider']})")
    if data["gpu"]["devices"] and verbosity() >= 0:
        gpus = table(
            "#", "Vulkan device", "type", "API", "memory GiB", "features", "float controls", "ragc kernels",
            title="Vulkan devices (* = the one runtime_min opens)", right=("memory GiB",),
        )  # fmt: skip
        for d in data["gpu"]["devices"]:
            on = [k for k, v in {**d["features"], **d["extensions"]}.items() if v] + (
                ["timestamps"] if d["timestamps"] else []
            )
            controls = [k.removeprefix("shader") for k, v in d["float_controls"].items() if v]
            kernels = "yes" if not d["missing"] else f"no: missing {', '.join(d['missing'])}"
            mark = "*" if d["picked"] else ""
            gpus.add_row(f"{d['index']}{mark}", d["name"], d["type"], d["api"], f"{d['memory_gib']:.1f}",
                         ", ".join(on), ", ".join(controls) or "none", kernels)  # fmt: skip
        out.print(gpus)
    glslc = data["glslc"]
    say(f"glslc: {glslc['version'] + ' at ' + glslc['path'] if glslc['available'] else glslc['reason']}")
    stack = table("NPU stack", "found", "detail", title="XDNA NPU stack on this machine")
    for f in data["npu"]["stack"]:
        stack.add_row(f["part"], "yes" if f["found"] else "no", f["detail"])
    if verbosity() >= 0:
        out.print(stack)
    p = data["personality"]
    state = (
        f"profiled ({p['path']})"
        if p["profiled"]
        else "not profiled yet: the first compile without --target runs `ragc profile --quick`"
    )
    say(f"this chip: {p['chip_id']}, {state}")
    v = data["versions"]
    say(f"ragc {v['ragc']}, runtime_min {v['runtime_min']}, bundle format {v['bundle_format']}")


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def command(as_json: bool) -> None:
    """Show what this machine offers ragc (CPU and onnxruntime, Vulkan devices, the NPU stack) and what is missing.

    \b
    Examples:
      ragc devices
      ragc devices --json | jq '.gpu.devices[] | {name, software}'
    """
    from ragc.cli.devices_probe import report

    data = report()
    if as_json:
        echo_json(data)
    else:
        show(data)
