"""`ragc inspect PLAN --xclbins`: the NPU kernels a plan references (never ships), how to build each one with
mlir-aie, and whether it is where runtime_min looks: `<root>/<device>/<design>/<file>` for each root of
RAGC_XCLBIN_PATH (docs/npu-xclbins.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def references(plan_dir: str | Path) -> list[dict[str, Any]]:
    """One entry per xclbin the plan's NPU partitions call, with every instruction file used with it and the sizes
    (the design's size parameters) it was generated for."""
    from runtime_min.backends.npu_program import load_program
    from runtime_min.manifest import read_bundle

    bundle = read_bundle(plan_dir)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for part in bundle.partitions:
        if part.device != "npu":
            continue
        for step in load_program(part, bundle).calls:
            ref = step["kernel"]
            key = (ref["device"], ref["design"], ref["xclbin"])
            entry = found.setdefault(
                key,
                {"device": key[0], "design": key[1], "xclbin": key[2], "build_args": ref["build_args"], "insts": []},
            )
            if all(i["file"] != ref["insts"] for i in entry["insts"]):
                entry["insts"].append({"file": ref["insts"], "dims": ref.get("dims", {})})
    return list(found.values())


def locate(entries: list[dict[str, Any]], roots: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each entry with `found`: the folder holding its xclbin and every instruction file (first root wins), or None."""
    located = []
    for entry in entries:
        folders = [Path(root) / entry["device"] / entry["design"] for root in roots]
        names = [entry["xclbin"], *(i["file"] for i in entry["insts"])]
        hit = next((f for f in folders if all((f / name).is_file() for name in names)), None)
        make = " ".join(f"{k}={v}" for k, v in sorted(entry["build_args"].items()))
        located.append(entry | {"found": None if hit is None else str(hit), "make": f"make {make}"})
    return located


def xclbin_report(plan_dir: str | Path) -> dict[str, Any]:
    """The references of a plan, located on this machine's RAGC_XCLBIN_PATH."""
    from runtime_min.options import LoadOptions

    roots = LoadOptions.make({}).xclbin_path
    return {"xclbin_path": list(roots), "xclbins": locate(references(plan_dir), roots)}
