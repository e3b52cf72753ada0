"""The docs that must not drift: the op support matrix and the CLI reference are what docs/generate.py makes from
the code now, and every figure the README quotes is in a dated results file, at the place the index names."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["op-support.md", "cli.md"])
def test_generated_pages_are_current(page):
    assert (ROOT / "docs" / page).read_text() == _generator().PAGES[page](), (
        f"docs/{page} is stale: run .venv/bin/python docs/generate.py"
    )


def test_the_matrix_lists_what_the_registries_hold():
    from codegen.gpu.lowering import LOWERINGS
    from codegen.npu.lower import LOWERINGS as NPU

    text = (ROOT / "docs" / "op-support.md").read_text()
    assert "| Conv | yes | yes | yes |" in text and "| Gelu | yes | yes | yes |" in text
    assert all(f"| {op} | yes | yes |" in text for op in LOWERINGS)
    assert all(re.search(rf"\| {op} \| yes \| (yes|-) \| yes \|", text) for op in NPU)


def lookup(data, where: str):
    """The value at `where` (docs/results/README.md says how the paths read)."""
    path, _, aggregate = where.partition("|")
    values = [data]
    for key in re.findall(r"\[[^\]]*\]|[^.\[]+", path):
        if key == "[*]":
            values = [item for value in values for item in value]
        elif key.startswith("[") and "=" in key:
            field, _, wanted = key[1:-1].partition("=")
            values = [next(item for item in value if str(item.get(field)) == wanted) for value in values]
        elif key.startswith("["):
            values = [value[int(key[1:-1])] for value in values]
        else:
            values = [value[key] for value in values]
    if aggregate == "len":
        return len(values[0])
    if aggregate.startswith("count<="):
        return sum(1 for v in values if v is not None and v <= float(aggregate.removeprefix("count<=")))
    return values[0]


def index_rows() -> list[list[str]]:
    text = (RESULTS / "README.md").read_text().split("## Every figure of the README")[1]
    rows = [line.replace("\\|", "\0") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return [[cell.strip().replace("\0", "|") for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_every_readme_figure_is_in_its_dated_results_file():
    readme = (ROOT / "README.md").read_text()
    rows = index_rows()
    assert len(rows) >= 20
    for figure, value, file, where in rows:
        path = RESULTS / file
        assert path.is_file(), f"{figure}: {file} is not in docs/results"
        assert file in (RESULTS / "README.md").read_text().split("## Every figure")[0], f"{file} has no date row"
        got = lookup(json.loads(path.read_text()), where)
        decimals = len(value.partition(".")[2])
        assert abs(float(got) - float(value)) <= 0.5 * 10**-decimals + 1e-9, f"{figure}: {file} {where} is {got}"
        shown = value.rstrip("0").rstrip(".") if "." in value and decimals > 1 else value
        assert value in readme or shown in readme, f"the README does not quote {figure} ({value})"


def test_the_readme_cites_no_file_that_is_not_here():
    readme = (ROOT / "README.md").read_text()
    for name in re.findall(r"\(([\w./-]+\.md)\)", readme):
        assert (ROOT / name).is_file(), f"README links {name}, which is not in the repository"
    assert "DESIGN.md" not in readme


def test_the_quickstart_app_runs_a_plan(tmp_path, capsys):
    import runpy

    from ragc.pipeline import compile_model

    bundle = compile_model(ROOT / "examples" / "tinynet.onnx", tmp_path / "plan", target="ryzen-ai-9-hx-370").bundle
    app = runpy.run_path(str(ROOT / "examples" / "app.py"))
    outputs = app["main"](str(bundle))
    assert outputs["probs"].shape == (1, 10) and "probs: float32[1, 10], argmax" in capsys.readouterr().out
