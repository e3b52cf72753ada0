"""`ragc validate PLAN --model MODEL`: compare a plan against onnxruntime on the original model, on the same fresh
random inputs; exit 1 beyond tolerance."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from ragc.cli.report import random_feeds
from ragc.errors import ModelError


@dataclass
class Comparison:
    rtol: float
    atol: float
    errors: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # name -> (abs, rel, within)

    @property
    def ok(self) -> bool:
        return all(within for _, _, within in self.errors.values())

    def lines(self) -> list[str]:
        rows = [
            f"{name}: max abs err {abs_err:.3g}, max rel err {rel_err:.3g} -> {'ok' if within else 'MISMATCH'}"
            for name, (abs_err, rel_err, within) in self.errors.items()
        ]
        verdict = "PASS" if self.ok else "FAIL"
        return [*rows, f"{verdict} (rtol {self.rtol:g}, atol {self.atol:g})"]


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float, atol: float) -> Comparison:
    """Per output: max errors and whether every element is within atol + rtol * |want| (NaN must match NaN)."""
    result = Comparison(rtol, atol)
    for name, expected in want.items():
        actual = got[name]
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            result.errors[name] = (float("inf"), float("inf"), False)
            continue
        if actual.dtype.kind not in "fiub":
            result.errors[name] = (0.0, 0.0, bool(np.array_equal(actual, expected)))
            continue
        a, e = actual.astype(np.float64), expected.astype(np.float64)
        same_nan = np.isnan(a) == np.isnan(e)
        diff = np.where(np.isnan(e), 0.0, np.abs(a - e))
        rel = diff / np.maximum(np.abs(e), np.finfo(np.float32).tiny)
        within = bool(np.all(same_nan) and np.all(diff <= atol + rtol * np.abs(np.nan_to_num(e))))
        result.errors[name] = (float(diff.max(initial=0)), float(np.nan_to_num(rel).max(initial=0)), within)
    return result


def compare_with_onnxruntime(
    plan_dir: str | Path, model: str | Path, rtol: float, atol: float, seed: int = 0, any_model: bool = False
) -> Comparison:
    import onnxruntime

    import runtime_min

    path = Path(model)
    if not path.is_file():
        raise ModelError(f"--model {str(path)!r} does not exist; give the .onnx the plan was compiled from")
    plan = runtime_min.load(plan_dir)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != plan.manifest.get("model_sha256") and not any_model:
        raise ModelError(
            f"--model {str(path)!r} is not the model this plan was compiled from (sha256 differs); "
            "give that model, or pass --any-model to compare anyway"
        )
    feeds = random_feeds(plan.inputs, seed)
    reference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    want = dict(zip(names, reference.run(names, feeds), strict=True))
    return compare_outputs(plan.run(feeds), want, rtol, atol)


@click.command("validate")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--model", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The original .onnx.")
@click.option("--rtol", default=1e-4, show_default=True, help="Relative tolerance.")
@click.option("--atol", default=1e-5, show_default=True, help="Absolute tolerance.")
@click.option("--seed", default=0, show_default=True, help="Seed for random inputs.")
@click.option("--any-model", is_flag=True, help="Compare even when MODEL is not the one the plan was compiled from.")
def command(plan: Path, model: Path, rtol: float, atol: float, seed: int, any_model: bool) -> None:
    """Compare PLAN against onnxruntime on the original MODEL with random inputs; exit 1 beyond tolerance.

    \b
    Example:
      ragc validate plan/ --model model.onnx --rtol 1e-4
    """
    report = compare_with_onnxruntime(plan, model, rtol=rtol, atol=atol, seed=seed, any_model=any_model)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(1)
