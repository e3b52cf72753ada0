"""Chrome / Perfetto traces of plan runs: one track per processor, a slice per step, flows for tensors that cross
processors, the GPU's kernel timestamps nested in their step, and simulated NPU time on a track of its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime_min.executor import Frame, StepRecord

PID = 1


def step_times(frame: Frame, order: list[str]) -> list[dict[str, Any]]:
    """Per partition (in `order`) of one finished frame: where it ran and when, in ms from the frame's submission."""
    return [
        {
            "partition": pid,
            "device": rec.step.device,
            "start_ms": (rec.start_ns - frame.submitted_ns) / 1e6,
            "duration_ms": (rec.end_ns - rec.start_ns) / 1e6,
        }
        for pid in order
        if (rec := frame.records.get(pid)) is not None
    ]


def write_trace(path: str | Path, frames: list[Frame], tracks: dict[str, str]) -> None:
    """Write the trace of `frames`; `tracks` maps each processor (in display order) to its track name."""
    Path(path).write_text(json.dumps(chrome_trace(frames, tracks), sort_keys=True, indent=1) + "\n")


def chrome_trace(frames: list[Frame], tracks: dict[str, str]) -> dict[str, Any]:
    tid = {proc: i + 1 for i, proc in enumerate(tracks)}
    simulated = {proc: len(tracks) + i + 1 for i, proc in enumerate(tracks)}  # used only where a step simulates
    t0 = min((f.submitted_ns for f in frames), default=0)
    events: list[dict[str, Any]] = [{"ph": "M", "pid": PID, "name": "process_name", "args": {"name": "runtime_min"}}]
    used_sim: set[str] = set()
    flow_id = 0
    for frame in frames:
        writer = {o.name: rec for rec in frame.records.values() for o in rec.step.partition.outputs}
        for pid in sorted(frame.records, key=lambda p: frame.records[p].start_ns):
            rec = frame.records[pid]
            proc = rec.step.processor
            events.append(_slice(rec, frame.index, tid[proc], t0))
            events += _kernels(rec, tid[proc], simulated[proc], t0)
            if any(t.simulated for t in rec.timings):
                used_sim.add(proc)
            for spec in rec.step.partition.inputs:
                src = writer.get(spec.name)
                if src is not None and src.step.processor != proc:
                    flow_id += 1
                    events += _flow(flow_id, spec.name, src, tid[src.step.processor], rec, tid[proc], t0)
    for proc, name in tracks.items():
        events.append(_thread_name(tid[proc], name))
        if proc in used_sim:
            events.append(_thread_name(simulated[proc], f"{proc} (simulated clock)"))
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"frames": len(frames)}}


def _us(ns: int, t0: int) -> float:
    return round((ns - t0) / 1e3, 3)


def _thread_name(tid: int, name: str) -> dict[str, Any]:
    return {"ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": name}}


def _complete(tid: int, name: str, cat: str, start_ns: int, end_ns: int, t0: int, args: dict) -> dict[str, Any]:
    """A Chrome complete ("X") event from `start_ns` to `end_ns`."""
    span = {"ts": _us(start_ns, t0), "dur": round((end_ns - start_ns) / 1e3, 3)}
    return {"ph": "X", "pid": PID, "tid": tid, "name": name, "cat": cat, **span, "args": args}


def _slice(rec: StepRecord, frame: int, tid: int, t0: int) -> dict[str, Any]:
    part, step = rec.step.partition, rec.step
    args = {"partition": part.id, "ops": len(part.ops), "device": step.device, "processor": step.processor}
    args |= {"frame": frame, "predicted_ms": part.predicted_ms}
    return _complete(tid, part.id, "step", rec.start_ns, rec.end_ns, t0, args)


def _kernels(rec: StepRecord, tid: int, sim_tid: int, t0: int) -> list[dict[str, Any]]:
    """Backend timings, placed from the step's start: measured ones nested in the step (clipped to it), simulated
    ones on the processor's simulated-clock track, since modelled time need not fit the step's wall time."""
    if not rec.timings:
        return []
    base = min(t.start_ns for t in rec.timings)
    events = []
    for t in rec.timings:
        start = rec.start_ns + t.start_ns - base
        end = start + t.duration_ns
        if not t.simulated:
            start, end = min(start, rec.end_ns), min(end, rec.end_ns)
        name, cat = (f"simulated: {t.label}", "simulated") if t.simulated else (t.label, "kernel")
        args = {"partition": rec.step.id, "simulated": t.simulated, "duration_ns": t.duration_ns}
        events.append(_complete(sim_tid if t.simulated else tid, name, cat, start, end, t0, args))
    return events


def _flow(fid: int, tensor: str, src: StepRecord, src_tid: int, dst: StepRecord, dst_tid: int, t0: int) -> list:
    """A tensor leaving the end of its writer's step and arriving at the start of its reader's."""
    common = {"pid": PID, "id": fid, "name": tensor, "cat": "tensor"}
    leave = max(src.start_ns, src.end_ns - 1)  # inside the writer's slice, so the flow binds to it
    return [
        {**common, "ph": "s", "tid": src_tid, "ts": _us(leave, t0)},
        {**common, "ph": "f", "bp": "e", "tid": dst_tid, "ts": _us(dst.start_ns, t0)},
    ]
