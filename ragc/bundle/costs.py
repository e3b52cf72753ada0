"""costs.json: what placement knew, kept beside the plan for `ragc explain` (the runtime never reads it).

Per op: its predicted ms on every processor of the chip (GPU kernels in the --precision asked for), why a processor
cannot run it, the --place rule that forced it and the precision its kernel runs in; per fused unit: its cost on
each processor of the placement problem, its bytes and its predicted span; the edges, the transfer costs (linear in
bytes) and the capacities. That is the whole placement problem, so `ragc explain` can re-solve it with one op forced
elsewhere. A bundle is untrusted input: `read_costs` checks every field before anything uses it
(docs/bundle-format.md).
"""

from __future__ import annotations

import math
from typing import Any

import codegen
from codegen.gpu.precision import PRECISIONS
from ragc.placement import Edge, PlacementProblem, Unit
from ragc.placement.solve import OBJECTIVES
from runtime_min import format as fmt
from runtime_min.manifest import Bundle

COSTS = "costs.json"
COSTS_VERSION = 1
MB = 1_000_000


def costs(c: Any) -> None:
    """The pipeline stage: costs.json for the bundle (nothing when there was nothing to place)."""
    if c.placement is not None:
        c.files[COSTS] = fmt.dumps(costs_document(c))


def costs_document(c: Any) -> dict[str, Any]:
    """The document of a compilation whose placement is done (ragc.compilation.Compilation)."""
    graph, problem, placement = c.loaded.graph, c.problem, c.placement
    chip = list(c.personality.devices)
    unit_of = {op: u.name for u in problem.units for op in u.ops}
    producers = graph.producers()
    precision = _op_precisions(c)
    ops = []
    for op in graph.ops:
        refused = {d: why for d in chip if (why := codegen.unsupported_reason(graph, op, d))}
        reads = [producers[t].name for t in op.inputs if t in producers]
        ops.append(
            {
                "name": op.name,
                "op_type": op.op_type,
                "unit": unit_of[op.name],
                "reads": list(dict.fromkeys(reads)),
                "ms": {d: None if d in refused else _ms(c.cost(graph, op, d)) for d in chip},
                "unsupported": refused,
                "forced": c.forced.get(op.name),
                "precision": precision.get(op.name, "fp32"),
            }
        )
    units = [
        {
            "name": u.name,
            "ops": list(u.ops),
            "device": placement.assignment[u.name],
            "cost_ms": {d: _ms(u.cost_ms[d]) for d in problem.devices},
            "mem_bytes": u.mem_bytes,
            "host_in_bytes": u.host_in_bytes,
            "host_out_bytes": u.host_out_bytes,
            "start_ms": _ms(placement.start_ms.get(u.name, 0.0)),
            "finish_ms": _ms(placement.finish_ms.get(u.name, 0.0)),
        }
        for u in problem.units
    ]
    power = None
    if c.options.objective == "energy":
        from ragc.costmodel.energy import power_figures

        power = {d: list(w) for d, w in (power_figures(c.personality.data, problem.devices) or {}).items()}
    return {
        "version": COSTS_VERSION,
        "objective": c.options.objective,
        "precision": c.options.precision,
        "max_latency_ms": c.options.max_latency_ms,
        "solver": placement.solver,
        "gap": None if placement.gap is None else round(placement.gap, 6),
        "placement_ms": _ms(placement.predicted_ms),
        "fixed_ms": _ms(c.personality.fixed_ms),
        "chip_devices": chip,
        "compiled_devices": list(c.devices),
        "devices": list(problem.devices),
        "ops": ops,
        "units": units,
        "edges": [[e.src, e.dst, e.nbytes] for e in problem.edges],
        "transfers": {
            f"{a}->{b}": {
                "ms": _ms(problem.transfer_ms(a, b, 0)),
                "ms_per_mb": _ms(problem.transfer_ms(a, b, MB) - problem.transfer_ms(a, b, 0)),
            }
            for a in problem.devices
            for b in problem.devices
            if a != b
        },
        "capacity_bytes": {d: int(v) for d, v in sorted(problem.capacity_bytes.items()) if d in problem.devices},
        "power": power,
        "stages": placement.stages,
    }


def _op_precisions(c: Any) -> dict[str, str]:
    """Op -> the precision of its kernel: its GPU partition's (after the compile-time check) once code is made,
    before that (`ragc explain MODEL`) the one asked for where the placement put the op on the GPU."""
    if c.artifacts:
        gpu = [p for p in c.partitions if p.device == "gpu"]
        return {op: c.artifacts[p.id].get("precision", "fp32") for p in gpu for op in p.ops}
    on_gpu = [u for u in c.problem.units if c.placement.assignment[u.name] == "gpu"]
    return {op: c.options.precision for u in on_gpu for op in u.ops}


def _ms(value: float) -> float | None:
    return round(float(value), 9) if math.isfinite(value) else None


# --- reading: every field checked -------------------------------------------------------------------------------


def read_costs(bundle: Bundle) -> dict[str, Any] | None:
    """The checked costs.json of a bundle, or None when the bundle has none (compiled before it existed)."""
    if COSTS not in bundle.manifest["files"]:
        return None
    doc = bundle.read_json(COSTS, COSTS)
    fmt.need_int(doc, "version", COSTS, COSTS_VERSION, COSTS_VERSION)
    fmt.need_str(doc, "objective", COSTS, OBJECTIVES)
    fmt.need_str(doc, "solver", COSTS)
    if "precision" in doc:
        fmt.need_str(doc, "precision", COSTS, PRECISIONS)
    for key in ("max_latency_ms", "gap", "placement_ms", "fixed_ms"):
        fmt.need_number(doc, key, COSTS)
    _required(doc, "placement_ms", COSTS)
    chip, devices = _devices(doc, "chip_devices"), _devices(doc, "devices")
    if not set(_devices(doc, "compiled_devices")) <= set(devices) or "cpu" not in devices:
        raise fmt.bad(COSTS, "'compiled_devices' are not among 'devices', or the CPU is missing")
    units = _units(doc, devices)
    _ops(doc, chip, units)
    _edges(doc, units)
    for a in devices:
        for b in (d for d in devices if d != a):
            link = fmt.need(fmt.need(doc, "transfers", dict, COSTS), f"{a}->{b}", dict, COSTS)
            for key in ("ms", "ms_per_mb"):
                _required(link, key, f"{COSTS} transfer {a}->{b}")
    capacity = fmt.need(doc, "capacity_bytes", dict, COSTS)
    for d in capacity:
        fmt.need_str({"d": d}, "d", f"{COSTS} capacity_bytes", tuple(devices))
        fmt.need_int(capacity, d, f"{COSTS} capacity_bytes")
    _power(doc, devices)
    _stages(doc, units)
    return doc


def _required(obj: Any, key: str, where: str) -> float:
    value = fmt.need_number(obj, key, where)
    if value is None:
        raise fmt.bad(where, f"{key!r} is missing")
    return value


def _devices(doc: dict[str, Any], key: str) -> list[str]:
    names = fmt.need_list(doc, key, COSTS, str)
    if not names or len(set(names)) != len(names) or not set(names) <= set(fmt.PROCESSORS):
        raise fmt.bad(COSTS, f"{key!r} = {names!r} is not a list of distinct {', '.join(fmt.PROCESSORS)}")
    return names


def _costs_by_device(obj: Any, key: str, devices: list[str], where: str) -> None:
    table = fmt.need(obj, key, dict, where)
    if sorted(table) != sorted(devices):
        raise fmt.bad(where, f"{key!r} does not give one entry per processor ({', '.join(devices)})")
    for d in devices:
        fmt.need_number(table, d, where)


def _units(doc: dict[str, Any], devices: list[str]) -> dict[str, int]:
    """Unit name -> position; each unit checked."""
    position: dict[str, int] = {}
    for k, unit in enumerate(fmt.need_list(doc, "units", COSTS, dict)):
        where = f"{COSTS} unit {k}"
        name = fmt.need_str(unit, "name", where)
        if name in position or not fmt.need_list(unit, "ops", where, str):
            raise fmt.bad(where, f"unit {name!r} is listed twice or has no ops")
        fmt.need_str(unit, "device", where, tuple(devices))
        _costs_by_device(unit, "cost_ms", devices, where)
        for key in ("mem_bytes", "host_in_bytes", "host_out_bytes"):
            fmt.need_int(unit, key, where)
        for key in ("start_ms", "finish_ms"):
            _required(unit, key, where)
        position[name] = k
    if not position:
        raise fmt.bad(COSTS, "it lists no units")
    return position


def _ops(doc: dict[str, Any], chip: list[str], units: dict[str, int]) -> None:
    ops = fmt.need_list(doc, "ops", COSTS, dict)
    names = {fmt.need_str(op, "name", f"{COSTS} op {k}") for k, op in enumerate(ops)}
    if len(names) != len(ops):
        raise fmt.bad(COSTS, "two ops share a name")
    listed = {op for u in doc["units"] for op in u["ops"]}
    if listed != names or sum(len(u["ops"]) for u in doc["units"]) != len(ops):
        raise fmt.bad(COSTS, "the units' ops are not the ops, each exactly once")
    for op in ops:
        where = f"{COSTS} op {op['name']!r}"
        fmt.need_str(op, "op_type", where)
        if fmt.need_str(op, "unit", where) not in units or op["name"] not in doc["units"][units[op["unit"]]]["ops"]:
            raise fmt.bad(where, f"its unit {op['unit']!r} does not list it")
        if not set(fmt.need_list(op, "reads", where, str)) <= names:
            raise fmt.bad(where, "it reads an op that is not in the plan")
        _costs_by_device(op, "ms", chip, where)
        refused = fmt.need(op, "unsupported", dict, where)
        for d in refused:
            fmt.need_str({"d": d}, "d", where, tuple(chip))
            fmt.need_str(refused, d, where)
        if op.get("forced") is not None:
            fmt.need_str(op, "forced", where, fmt.PROCESSORS)
        if "precision" in op:
            fmt.need_str(op, "precision", where, PRECISIONS)


def _edges(doc: dict[str, Any], units: dict[str, int]) -> None:
    for k, edge in enumerate(fmt.need_list(doc, "edges", COSTS, list)):
        where = f"{COSTS} edge {k}"
        if len(edge) != 3 or not all(isinstance(e, str) for e in edge[:2]) or edge[0] not in units:
            raise fmt.bad(where, "it is not [source unit, destination unit, bytes]")
        if edge[1] not in units or units[edge[0]] >= units[edge[1]]:
            raise fmt.bad(where, "it does not run from an earlier unit to a later one")
        fmt.need_int({"bytes": edge[2]}, "bytes", where)


def _power(doc: dict[str, Any], devices: list[str]) -> None:
    power = doc.get("power")
    if power is None:
        return
    for d in devices:
        watts = fmt.need_list(fmt.need(doc, "power", dict, COSTS), d, f"{COSTS} power", (int, float))
        if len(watts) != 2 or not all(math.isfinite(w) and w >= 0 for w in watts):
            raise fmt.bad(f"{COSTS} power", f"{d!r} is not [active W, idle W]")


def _stages(doc: dict[str, Any], units: dict[str, int]) -> None:
    stages = doc.get("stages")
    if stages is None:
        return
    flat = [u for stage in fmt.need_list(doc, "stages", COSTS, list) for u in stage]
    if sorted(flat, key=str) != sorted(units, key=str):
        raise fmt.bad(COSTS, "'stages' do not hold every unit exactly once")


# --- the placement problem again -------------------------------------------------------------------------------


def problem_of(doc: dict[str, Any], costs: dict[str, dict[str, float | None]] | None = None) -> PlacementProblem:
    """The placement problem a checked document describes; `costs` replaces units' cost_ms (unit -> device -> ms)."""
    links = doc["transfers"]

    def transfer_ms(src: str, dst: str, nbytes: int) -> float:
        if src == dst:
            return 0.0
        link = links[f"{src}->{dst}"]
        return link["ms"] + nbytes / MB * link["ms_per_mb"]

    units = [
        Unit(
            u["name"],
            list(u["ops"]),
            {d: math.inf if ms is None else ms for d, ms in ((costs or {}).get(u["name"]) or u["cost_ms"]).items()},
            u["mem_bytes"],
            u["host_in_bytes"],
            u["host_out_bytes"],
        )
        for u in doc["units"]
    ]
    edges = [Edge(s, t, n) for s, t, n in doc["edges"]]
    return PlacementProblem(units, edges, list(doc["devices"]), transfer_ms, dict(doc["capacity_bytes"]))
