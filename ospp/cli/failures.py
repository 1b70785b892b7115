"""What fails outside a command's run(), as the root groups (``ospp``, ``slmgr``: cli.slash's
``ReportingGroup``) report it: click's usage errors, with the licensing code or as the JSON
error object; a command line cancelled; standard output that cannot be written, or that the
process was started without.

Imported only when one of these happens, so that a command that succeeds does without it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from typing import NoReturn

import click

from ospp.cli.base import Result, command_name, emit, output_broken
from ospp.core.errors import (
    E_INVALID_ARG,
    Cancelled,
    ExitStatus,
    UsageError,
    hex_code,
    os_error_code,
)


def click_error(exc: click.ClickException) -> NoReturn:
    """What click prints for its error, and the licensing code of a usage error."""
    from ospp.core.printable import printable

    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()  # a group with no command: its help, as click prints it
    elif isinstance(exc, click.UsageError):
        # the message quotes what was typed: escape sequences are shown, not obeyed
        click.UsageError(printable(exc.format_message()), exc.ctx).show()
    else:
        click.ClickException(printable(exc.format_message())).show()
    if isinstance(exc, click.UsageError):
        click.echo(f"ERROR CODE: 0x{E_INVALID_ARG:08X}", err=True)
    sys.exit(exc.exit_code)


def json_click_error(exc: click.ClickException, program: str) -> NoReturn:
    """Click's error as the JSON error object: a usage error (exit 2), or another of click's
    errors (exit 1)."""
    command = _command_of(getattr(exc, "ctx", None))
    error = UsageError(_json_message(exc), _usage_hint(exc))
    if not isinstance(exc, click.UsageError):  # click's other errors exit 1
        error.exit_status = ExitStatus.LICENSING
    sys.exit(_emit_json(Result(error=error), command, program))


def json_cancelled(program: str) -> NoReturn:
    """A command line cancelled (Ctrl-C) before any command ran, as the JSON error object."""
    sys.exit(_emit_json(Result(error=Cancelled(interrupted=True)), "", program))


def _emit_json(result: Result, command: str, program: str) -> int:
    """``emit`` of an error met outside any command; output that cannot be written is said as
    it is for a command's."""
    try:
        return emit(result, True, command)
    except OSError as exc:
        if not output_broken(exc):
            raise
        output_failed(exc, program)


class ClosedOutput(io.TextIOBase):
    """Standard output the process was started without (``ospp ... >&-``): each write fails
    as one to a closed descriptor does, so the output is reported as output that cannot be
    written (exit 3) instead of being lost in silence."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


def output_failed(exc: OSError, program: str = "ospp") -> NoReturn:
    """Standard output could not be written (a full disk, ``> /dev/full``): said on standard
    error with the code of a file that cannot be written, exit 3. What is still waiting in
    the output's buffer goes to the null device, so that ending the process does not fail
    again over it."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    with contextlib.suppress(OSError, ValueError):
        click.echo(f"{program}: cannot write the output: {exc.strerror or exc}", err=True)
        click.echo(f"ERROR CODE: {hex_code(os_error_code(exc))}", err=True)
    sys.exit(int(ExitStatus.STORE))


def _command_of(ctx: click.Context | None) -> str:
    """The command a usage error belongs to; ``""`` before one was chosen (an unknown name,
    or a group such as ``kms`` given none), as docs/JSON.md says."""
    if ctx is None or ctx.parent is None or isinstance(ctx.command, click.Group):
        return ""
    return command_name(ctx)


def _json_message(exc: click.ClickException) -> str:
    """Click's message for ``--json``; for a group given no command (whose message is the
    whole help text), which commands it has."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        group = exc.ctx.command
        names = group.list_commands(exc.ctx) if isinstance(group, click.Group) else []
        return f"'{exc.ctx.command_path}' needs a command: one of {', '.join(names)}"
    return exc.format_message()


def _usage_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.parent is not None:
        return f"Run '{ctx.command_path} --help' for its options."
    program = ctx.find_root().info_name if ctx is not None else None
    return f"Run '{program or 'ospp'} /?' for the list of commands."
