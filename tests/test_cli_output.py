"""What every command writes: examples in every --help, the exit-code table, --version, valid JSON wherever --json
is offered, rows never cut off a terminal, NO_COLOR on a terminal, one-line warnings and errors, -v/-q, Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from executor_plans import three_processor_plan
from hostile_fixtures import TARGET
from onnx import TensorProto, helper

from ragc.cli import main
from ragc.pipeline import compile_model

LONG = "a_node_name_far_longer_than_any_terminal_is_wide_" * 4  # 200 characters
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|38;|9[0-7])[0-9;]*m")


def leaves(group: click.Group, path=("ragc",)):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("out")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name=LONG)], "long", [x], [y])
    model = folder / "long.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    long = compile_model(model, folder / "long", target=TARGET, devices="cpu").bundle
    return {"long": long, "long_model": model, "three": three_processor_plan(folder / "three"), "folder": folder}


def cli(*args, env=None):
    return CliRunner(env={"RAGC_NPU": None, **(env or {})}).invoke(main, [*map(str, args)])


@pytest.mark.parametrize("path", list(leaves(main)), ids=" ".join)
def test_every_help_has_examples(path):
    result = cli(*path[1:], "--help")
    assert result.exit_code == 0 and "Example" in result.output, result.output
    assert "-q, --quiet" in result.output and "-v, --verbose" in result.output


def test_the_group_help_documents_exit_codes_and_version():
    text = cli("--help").output
    for code in ("0 success", "1 bad input", "2 usage", "3 internal error", "130 interrupted"):
        assert code in text
    lines = cli("--version").output.splitlines()
    assert lines[0].startswith("ragc ") and "bundle format 3" in lines[1] and "onnxruntime" in lines[2]


def test_json_is_valid_wherever_it_is_offered(plans, tmp_path):
    three, long_model = plans["three"], plans["long_model"]
    commands = [
        ("inspect", three, "--json"),
        ("inspect", three, "--xclbins", "--json"),
        ("simulate", three, "--json"),
        ("explain", three, "--json"),
        ("run", three, "--json", "--repeat", 2),
        ("validate", three, "--model", plans["folder"] / "three" / "m.onnx", "--json"),
        ("compile", long_model, "-o", tmp_path / "p", "--target", TARGET, "--json"),
        ("profile", "--show", "--target", TARGET, "--json"),
        ("devices", "--json"),
    ]
    for args in commands:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
        data = json.loads(result.stdout)  # the whole of stdout is one document
        assert isinstance(data, dict) and "NaN" not in result.stdout and "Infinity" not in result.stdout, args


def test_rows_are_never_cut_when_stdout_is_a_pipe(plans):
    for args in (("inspect", plans["long"]), ("explain", plans["long"]), ("run", plans["long"], "--repeat", 1)):
        result = subprocess.run(
            [sys.executable, "-m", "ragc.cli", *map(str, args)], capture_output=True, text=True, env=os.environ
        )
        assert result.returncode == 0, result.stderr
        assert "…" not in result.stdout, result.stdout
        if args[0] != "run":
            assert LONG in result.stdout, result.stdout


def _on_a_terminal(args, no_color: bool) -> str:
    """stdout of `ragc args` on a pseudo-terminal, 80 columns."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    env |= {"TERM": "xterm-256color", "COLUMNS": "80"} | ({"NO_COLOR": "1"} if no_color else {})
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragc.cli", *args], stdout=follower, stderr=subprocess.DEVNULL, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_no_color_is_respected_on_a_terminal():
    args = ["profile", "--show", "--target", TARGET]  # the NPU stack's missing parts are red
    assert COLOUR.search(_on_a_terminal(args, no_color=False))
    assert not COLOUR.search(_on_a_terminal(args, no_color=True))


def test_a_fallback_is_one_warning_line(plans):
    result = cli("run", plans["three"], "--repeat", 1)
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 0 and len(warnings) == 1 and warnings[0].startswith("warning: runtime_min: npu")
    assert "RuntimeMinWarning" not in result.stderr and "warnings.warn" not in result.stderr


def test_quiet_and_verbose(plans, tmp_path):
    quiet = cli("-q", "run", plans["three"], "--repeat", 2, "--npu", "sim")
    assert quiet.exit_code == 0 and "┃" not in quiet.stdout and "median latency" in quiet.stdout
    assert "probs" not in quiet.stdout and "y:" not in quiet.stdout
    assert "each run (ms)" in cli("run", plans["three"], "--repeat", 2, "--npu", "sim", "-v").stdout
    assert cli("inspect", plans["three"], "-q").stdout.startswith("predicted ")
    both = cli("run", plans["three"], "-v", "-q")
    assert both.exit_code == 2 and "give -v or -q, not both" in both.stderr
    model = plans["long_model"]
    assert "frontend" in cli("compile", model, "-o", tmp_path / "v", "--target", TARGET, "-v").stdout


def test_ctrl_c_and_internal_errors_are_one_line(plans, monkeypatch):
    from ragc.cli import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "timed_runs", interrupted)
    result = cli("run", plans["long"])
    assert result.exit_code == 130 and result.stderr.strip() == "error: interrupted"

    def broken(*args, **kwargs):
        raise ValueError("a bug\nwith a second line")

    monkeypatch.setattr(runner, "timed_runs", broken)
    result = cli("run", plans["long"])
    assert result.exit_code == 3 and result.stderr.strip().startswith("internal error: ValueError: a bug (rerun")
    assert "Traceback" in cli("-vv", "run", plans["long"]).stderr


def test_json_without_show_is_a_usage_line():
    result = cli("profile", "--json")
    assert result.exit_code == 2 and result.stderr.strip().startswith("error: --json goes with --show")
