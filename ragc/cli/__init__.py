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

from ragc.cli.output import VERBOSITY, verbosity_options

EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 130
EPILOG = """\b
Exit status: 0 success; 1 bad input (model, bundle, feeds, a failed validate); 2 usage (bad options);
3 internal error (a bug: rerun with -vv or RAGC_DEBUG=1 and report it); 130 interrupted (Ctrl-C).
Output: tables at full width when stdout is not a terminal; no colour under NO_COLOR; --json where offered;
warnings as one `warning:` line on stderr.

\b
Examples:
  ragc devices
  ragc compile model.onnx -o plan/ && ragc validate plan/ --model model.onnx && ragc run plan/
  ragc explain plan/
"""


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message).splitlines()
    print(f"warning: {text[0] if text else category.__name__}", file=sys.stderr)


class RagcGroup(click.Group):
    """Runs a command; our errors become `error: <one line>` on stderr with the exit status above, and every Python
    warning (ours, the runtime's, a library's, from any thread) one `warning:` line."""

    def invoke(self, ctx: click.Context):
        from ragc.errors import RagcError, UsageError
        from runtime_min.errors import RuntimeMinError

        shown = warnings.showwarning
        warnings.showwarning = _one_line_warning
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _usage_error(exc)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (RagcError, RuntimeMinError) as exc:
            _debug(ctx)
            click.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
            sys.exit(EXIT_USAGE if isinstance(exc, UsageError) else EXIT_BAD_INPUT)
        except Exception as exc:  # a bug of ours: still one line, with how to get the details
            _debug(ctx)
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(
                f"internal error: {type(exc).__name__}: {first} (rerun with RAGC_DEBUG=1 and report it)", err=True
            )
            sys.exit(EXIT_INTERNAL)
        finally:
            warnings.showwarning = shown

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # plain `ragc`: the help
        except click.UsageError as exc:  # an option of the group itself, or no such command
            _usage_error(exc)


def _usage_error(exc: click.UsageError) -> None:
    """A bad option or argument: one line too, saying where the help is."""
    where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx else ""
    click.echo(f"error: {exc.format_message().rstrip('.')}{where}", err=True)
    sys.exit(EXIT_USAGE)


def _debug(ctx: click.Context) -> None:
    if os.environ.get("RAGC_DEBUG") or ctx.meta.get(VERBOSITY, 0) >= 2:
        traceback.print_exc()


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from ragc.cli.versions import version_text

        click.echo(version_text())
        ctx.exit()


@click.group(cls=RagcGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show ragc's, the runtime's, the bundle format's and the key libraries' versions.",
)
def main() -> None:
    """ragc: compile an ONNX model into a plan that runs across the CPU, a Vulkan GPU and an XDNA NPU."""


def _register() -> None:
    from ragc.cli import (
        compile,
        costmodel,
        devices,
        explain,
        inspect,
        profile,
        run,
        selftest,
        simulate,
        validate,
    )

    main.params += verbosity_options()
    commands = (compile, run, inspect, simulate, validate, explain, devices, profile, costmodel, selftest)
    for module in commands:
        main.add_command(module.command)
    for command in _leaves(main):
        command.params += verbosity_options()


def _leaves(group: click.Group) -> list[click.Command]:
    found = []
    for command in group.commands.values():
        found += _leaves(command) if isinstance(command, click.Group) else [command]
    return found


_register()
