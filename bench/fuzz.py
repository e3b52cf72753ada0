"""The bundle fuzzer (tests/bundle_fuzz.py) run longer than CI runs it: N mutations per plan kind (cpu, gpu,
cpu+gpu+npu), from a seed, so each run explores new mutations. Every mutation must end in one RuntimeMinError line
or a sound run; the first that does not stops the run and prints how to reproduce it.

    python bench/fuzz.py [--examples 5000] [--seed 1] [--kinds cpu,gpu,three]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def fuzzer(plan: Path, seen: dict[str, int], advance, args: argparse.Namespace):
    """A hypothesis test of `args.examples` mutations of `plan` from `args.seed`, counting outcomes into `seen`."""
    from bundle_fuzz import check, mutations
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data) -> None:
        result = check(plan, data.draw(mutations(plan)))
        seen[result] = seen.get(result, 0) + 1
        advance()

    return fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="mutations per plan kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default="cpu,gpu,three")
    args = parser.parse_args()
    from hostile_fixtures import compile_plans
    from rich.progress import Progress

    rows = []
    with tempfile.TemporaryDirectory() as tmp, Progress() as bar:
        plans = compile_plans(Path(tmp))
        for kind in args.kinds.split(","):
            seen: dict[str, int] = {}
            task = bar.add_task(kind, total=args.examples)
            start = time.perf_counter()

            fuzz = fuzzer(plans[kind], seen, lambda task=task: bar.advance(task), args)
            try:
                fuzz()
            except Exception as exc:  # hypothesis has printed the falsifying mutation above
                sys.exit(f"{kind}: {type(exc).__name__}: {exc} (reproduce: --seed {args.seed})")
            seconds = time.perf_counter() - start
            rows.append((kind, sum(seen.values()), seen.get("error", 0), seen.get("ran", 0), seconds))
    print("| plan | mutations | one-line errors | sound runs | seconds |")
    print("|---|---:|---:|---:|---:|")
    for kind, total, errors, ran, seconds in rows:
        print(f"| {kind} | {total} | {errors} | {ran} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
