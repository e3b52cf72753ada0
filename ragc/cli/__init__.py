"""The `ragc` command line: one module per command, all behind one group that turns every error into one line.

Exit status: 0 success; 1 bad input (model, bundle, feeds, a failed `validate`); 2 usage (bad options);
3 internal error (a bug: rerun with RAGC_DEBUG=1 for the traceback and report it); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

import click

EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 130


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr)


class RagcGroup(click.Group):
    """Runs a command; our errors become `error: <one line>` on stderr with the exit status above."""

    def invoke(self, ctx: click.Context):
        from ragc.errors import RagcError, UsageError
        from runtime_min.errors import RuntimeMinError

        warnings.showwarning = _one_line_warning
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (RagcError, RuntimeMinError) as exc:
            _debug()
            click.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
            sys.exit(EXIT_USAGE if isinstance(exc, UsageError) else EXIT_BAD_INPUT)
        except Exception as exc:  # a bug of ours: still one line, with how to get the details
            _debug()
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(
                f"internal error: {type(exc).__name__}: {first} (rerun with RAGC_DEBUG=1 and report it)", err=True
            )
            sys.exit(EXIT_INTERNAL)


def _debug() -> None:
    if os.environ.get("RAGC_DEBUG"):
        traceback.print_exc()


@click.group(cls=RagcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ragc")
def main() -> None:
    """ragc: compile an ONNX model into a plan that runs across the CPU, a Vulkan GPU and an XDNA NPU."""


def _register() -> None:
    from ragc.cli import compile, costmodel, explain, inspect, profile, run, selftest, simulate, validate

    for module in (compile, run, inspect, simulate, validate, explain, profile, costmodel, selftest):
        main.add_command(module.command)


_register()
