"""How `ragc explain` prints an explanation (ragc.cli.explain_ops): the plan's figures, what the --place rules
cost, each processor alone, the tuned candidates, then one row per op with the reason for every processor it is
not on; long reasons become numbered notes under the table."""

from __future__ import annotations

from typing import Any

from ragc.cli.output import console, say, table, verbosity

SHORT = {"unsupported": "cannot run it", "not-compiled": "not compiled for (--devices)"}


def chip_label(chip_id: str | None) -> str:
    """A chip id as people read it: target files lose their `target-` prefix and say what they are."""
    chip = str(chip_id or "unknown")
    return (
        f"{chip.removeprefix('target-')} (a target file: every figure is predicted)"
        if chip.startswith("target-")
        else chip
    )


def _ms(value: Any, digits: int = 3) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def headline(facts: dict[str, Any], e: dict[str, Any]) -> list[str]:
    """The lines above the op table."""
    metric, predicted = e["metric"], e["chosen"]
    gap = facts.get("gap")
    proof = "" if gap is None else " (proven optimal)" if gap == 0 else f", gap {gap:.1%}"
    lines = [
        f"{facts['what']} for chip {chip_label(facts.get('chip_id'))}",
        f"objective {e['objective']}; solver {e['solver']}{proof}; predicted {_ms(predicted)} {metric} "
        f"({', '.join(facts.get('processors') or [])})",
    ]
    unforced = e.get("unforced_ms")
    if isinstance(unforced, float) and unforced > 0:
        ratio = predicted / unforced
        lines.append(
            f"--place rules force {sum(1 for op in e['ops'] if op['forced'])} ops: without them the solver predicts "
            f"{_ms(unforced)} {metric}; this plan is {ratio:.1f}x {'slower' if ratio >= 1 else 'faster'}"
        )
    elif isinstance(unforced, str):
        lines.append(f"without the --place rules no plan exists: {unforced}")
    if e["baselines_ms"] and metric == "ms":
        alone = ", ".join(
            f"{d} {ms:.3f} ms ({ms / predicted:.2f}x)" for d, ms in e["baselines_ms"].items() if predicted
        )
        lines.append(f"each processor alone (the CPU taking what it cannot run): {alone}")
    return lines


def why_text(row: dict[str, Any], notes: dict[str, int]) -> str:
    """The reasons of one op, processors with the same reason grouped; reasons the op cannot run somewhere become
    note numbers (printed under the table)."""
    if row["forced"]:
        return f"forced onto {row['forced']} by --place"
    grouped: dict[str, list[str]] = {}
    for device, why in row["others"].items():
        grouped.setdefault(_short(why, notes), []).append(device)
    return "; ".join(f"{', '.join(devices)}: {text}" for text, devices in grouped.items())


def _short(why: dict[str, Any], notes: dict[str, int]) -> str:
    def note(text: str) -> str:
        return f"[{notes.setdefault(text, len(notes) + 1)}]"

    if why["why"] in ("unsupported", "does-not-fit"):
        return f"{SHORT.get(why['why'], 'no plan')} {note(why['detail'])}"
    if why["why"] == "fused-with" and "with_forced" in why:
        return f"fused with {why['with']}, which --place put on {why['with_forced']}"
    if why["why"] == "fused-with" and "with_reason" in why:
        return f"fused with {why['with']}, which it cannot run {note(why['with_reason'])}"
    return SHORT.get(why["why"], why["detail"])


def show(facts: dict[str, Any], e: dict[str, Any], npu: dict[str, Any] | None = None) -> None:
    """Print the explanation of a plan (facts from its manifest) or of a model placed in memory."""
    out = console()
    for line in headline(facts, e):
        out.print(line)
    if verbosity() < 0:
        return
    candidates = facts.get("candidates") or []
    if any(c.get("measured_ms") is not None for c in candidates):
        tuned = table("candidate", "predicted ms", "measured ms", title="candidate plans timed on the chip (kept: *)",
                      right=("predicted ms", "measured ms"))  # fmt: skip
        for c in candidates:
            tuned.add_row(c["name"] + (" *" if c["name"] == facts.get("chosen") else ""), _ms(c["predicted_ms"]),
                          _ms(c.get("measured_ms")))  # fmt: skip
        out.print(tuned)
    devices = list(e["ops"][0]["predicted_ms"]) if e["ops"] else []
    reduced = any(row.get("precision", "fp32") != "fp32" for row in e["ops"])  # the column only where it says something
    title = f"why each of the {len(e['ops'])} ops runs where it does (predicted ms per op)"
    ops = table("op", "type", "on", *(["precision"] if reduced else []), *(f"{d} ms" for d in devices),
                "why not the others", title=title, right=tuple(f"{d} ms" for d in devices))  # fmt: skip
    notes: dict[str, int] = {}
    for row in e["ops"]:
        ms = [_ms(row["predicted_ms"][d], 4) for d in devices]
        kind = [row.get("precision", "fp32")] if reduced else []
        ops.add_row(row["name"], row["op_type"], row["chosen"], *kind, *ms, why_text(row, notes))
    out.print(ops)
    for detail, number in notes.items():
        out.print(f"[{number}] {detail}")
    moves = e.get("moves")
    if moves and moves["count"]:
        say(
            f"'if moved': the op's fused unit forced onto that processor and the whole plan re-solved "
            f"({moves['count']} solves, solver {moves['solver']}, {moves['time_limit_s']:.2g} s each)"
        )
        if moves["unproven"]:
            say(
                f"{moves['unproven']} re-solves were not proven optimal in their time ('at most'): give them more "
                "with --time-limit"
            )
    if npu is not None:
        for line in npu_lines(e, npu):
            out.print(line)


def npu_summary(e: dict[str, Any]) -> dict[str, Any] | None:
    """The NPU's side of a plan from its op rows: ops on it, and the ops it cannot run grouped by reason."""
    if not e["ops"] or "npu" not in e["ops"][0]["predicted_ms"]:
        return None
    refused: dict[str, int] = {}
    for row in e["ops"]:
        why = row["others"].get("npu")
        if why and why["why"] == "unsupported":
            refused[why["detail"]] = refused.get(why["detail"], 0) + 1
    on = sum(1 for row in e["ops"] if row["chosen"] == "npu")
    return {"ops_on_npu": on, "ops": len(e["ops"]), "refused": dict(sorted(refused.items(), key=lambda kv: -kv[1]))}


def npu_lines(e: dict[str, Any], npu: dict[str, Any]) -> list[str]:
    lines = [f"NPU: {npu['ops_on_npu']} of {npu['ops']} ops run on it; it cannot run {sum(npu['refused'].values())}"]
    lines += [
        f"  not on the NPU ({count} op{'s' if count > 1 else ''}): {reason}"
        for reason, count in list(npu["refused"].items())[:3]
    ]
    return lines
