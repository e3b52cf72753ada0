"""Derived numbers (best peer, ratios, predicted vs measured) and the markdown tables of a results.json."""

from __future__ import annotations

from typing import Any

SYSTEM_LABELS = {
    "ragc-auto": "ragc auto",
    "ragc-cpu": "ragc cpu",
    "ragc-gpu": "ragc gpu",
    "ort-cpu": "ORT CPU",
    "iree-llvm-cpu": "IREE llvm-cpu",
    "iree-vulkan": "IREE vulkan",
}
TARGET_RATIO = 0.9  # ragc auto should run at or below this fraction of the best peer's latency


def median(record: dict[str, Any] | None) -> float | None:
    return record.get("median_ms") if record and record.get("status") == "ok" else None


def summarize(systems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Best peer, ragc auto / best peer, and predicted / measured for each ragc system of one model."""
    peers = {name: median(r) for name, r in systems.items() if r.get("kind") == "peer" and median(r) is not None}
    best = min(peers, key=lambda n: (peers[n], n)) if peers else None
    auto = median(systems.get("ragc-auto"))
    predicted = {
        name: r["predicted_ms"] / r["median_ms"]
        for name, r in systems.items()
        if r.get("kind") == "ragc" and median(r) and r.get("predicted_ms") is not None
    }
    return {
        "best_peer": best,
        "best_peer_ms": peers.get(best) if best else None,
        "auto_vs_best_peer": auto / peers[best] if best and auto else None,
        "predicted_over_measured": dict(sorted(predicted.items())),
    }


def latency_table(results: dict[str, Any]) -> str:
    """One row per model: median ms of each system, ragc auto / best peer, its predicted ms and output error."""
    systems = _systems_present(results)
    header = [
        "model",
        *(SYSTEM_LABELS.get(s, s) for s in systems),
        "best peer",
        "auto / best",
        "auto predicted (/ measured)",
        "auto compile s",
        "auto max abs err",
    ]
    rows = []
    for model in results["models"]:
        by_system, summary = model.get("systems", {}), model.get("summary", {})
        auto = by_system.get("ragc-auto", {})
        rows.append(
            [
                model["name"],
                *(_cell(by_system.get(s), model.get("status", "-")) for s in systems),
                SYSTEM_LABELS.get(summary.get("best_peer"), "-"),
                _num(summary.get("auto_vs_best_peer"), "{:.2f}x"),
                _predicted(auto.get("predicted_ms"), summary.get("predicted_over_measured", {}).get("ragc-auto")),
                _num(auto.get("compile_s"), "{:.1f}"),
                _num(auto.get("max_abs_err"), "{:.2g}"),
            ]
        )
    return _markdown(header, rows)


def detail_table(results: dict[str, Any]) -> str:
    """One row per model and system: spread, run count, compile time, memory, error, notes."""
    header = [
        "model",
        "system",
        "status",
        "median ms",
        "p10",
        "p90",
        "runs",
        "compile s",
        "predicted ms",
        "peak RSS MB",
        "max abs err",
        "max rel err",
        "note",
    ]
    rows = []
    for model in results["models"]:
        by_system = model.get("systems", {})
        for name in _ordered(by_system):
            r = by_system[name]
            rows.append(
                [
                    model["name"],
                    SYSTEM_LABELS.get(name, name),
                    r.get("status", "-"),
                    *(_num(r.get(k), "{:.3f}") for k in ("median_ms", "p10_ms", "p90_ms")),
                    str(r.get("runs", "-")),
                    _num(r.get("compile_s"), "{:.2f}"),
                    _num(r.get("predicted_ms"), "{:.3g}"),
                    _num(r.get("peak_rss_mb"), "{:.0f}"),
                    _num(r.get("max_abs_err"), "{:.2g}"),
                    _num(r.get("max_rel_err"), "{:.2g}"),
                    (r.get("note") or "").replace("|", "/")[:160],
                ]
            )
    return _markdown(header, rows)


def _systems_present(results: dict[str, Any]) -> list[str]:
    return _ordered({name for model in results["models"] for name in model.get("systems", {})})


def _ordered(names) -> list[str]:
    """System names in the table's column order (ragc first, then the peers), unknown ones last."""
    seen = set(names)
    return [s for s in SYSTEM_LABELS if s in seen] + sorted(seen - set(SYSTEM_LABELS))


def _cell(record: dict[str, Any] | None, model_status: str) -> str:
    """Median ms with flags; the status where there is none (a system that never reported: the model's status)."""
    if not record:
        return "-" if model_status == "ok" else model_status
    value = median(record)
    if value is None:
        return record.get("status", "-")
    flags = [
        flag
        for flag, bad in (("wrong", not record.get("agrees", True)), ("CPU fallback", record.get("fallbacks")))
        if bad
    ]
    return f"{value:.3f} ({', '.join(flags)})" if flags else f"{value:.3f}"


def _predicted(ms: float | None, ratio: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.3g} ({ratio:.2f}x)" if ratio is not None else f"{ms:.3g}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
