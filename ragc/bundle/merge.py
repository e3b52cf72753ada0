"""Several plans written as one bundle (ragc.variants, ragc.llm): one tensor store, every distinct artifact once under
its content hash, one schedule file per plan."""

from __future__ import annotations

import hashlib
from typing import Any

from runtime_min.format import SCHEDULE, TENSOR_STORE, dumps

META = ("opstats.json", "timeline.svg", "costs.json")  # compiler-side files: kept for the first plan only


def merge_plans(done: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, str]]:
    """`done`: name -> a Compilation run up to the bundle (ragc.pipeline.compile_unwritten), all sharing one tensor
    store. Every plan's files under content-hash names (each distinct artifact once), its schedule as
    schedule.<name>.json (the first plan's also as schedule.json). Returns the files and each plan's schedule file."""
    files: dict[str, bytes] = {}
    schedules: dict[str, str] = {}
    store = next(iter(done.values())).store
    for index, (name, c) in enumerate(done.items()):
        renamed = {}
        for old, data in c.files.items():
            if old == TENSOR_STORE or old.endswith(".spv"):
                continue  # shared already: one store, kernels named by content hash
            if old in META:
                if index == 0:
                    files[old] = data  # the first plan's, for ragc explain and run --record
                continue
            renamed[old] = f"{hashlib.sha256(data).hexdigest()[:24]}.{old.split('.', 1)[1]}"
            files[renamed[old]] = data
        files.update({k: v for k, v in c.files.items() if k.endswith(".spv")})
        c.schedule = _renamed(c.schedule, renamed)
        schedules[name] = SCHEDULE if index == 0 else f"schedule.{name}.json"
        files[schedules[name]] = dumps(c.schedule)
    files[TENSOR_STORE] = store.data()
    return files, schedules


def _renamed(schedule: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
    """The schedule with every artifact file name replaced by its new name."""
    out = dict(schedule, partitions=[])
    for part in schedule["partitions"]:
        part = dict(part)
        for key in ("artifact", "fallback"):
            if part.get(key) is not None:
                art = dict(part[key])
                art["files"] = sorted(renamed.get(f, f) for f in art["files"])
                for main in ("model", "program"):
                    if main in art:
                        art[main] = renamed.get(art[main], art[main])
                part[key] = art
        out["partitions"].append(part)
    return out
