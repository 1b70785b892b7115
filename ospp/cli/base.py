"""Shared CLI machinery: results, --json, the one place errors are caught, @reports.

A command's function returns a :class:`Result` (text lines in ospp.vbs form plus the same facts
as JSON) or raises :class:`~ospp.errors.OsppError`; :func:`run` prints either and sets the exit
status.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import io
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import click

from ospp.cli import complete
from ospp.core.db import close_all
from ospp.core.errors import (
    Cancelled,
    ExitStatus,
    InternalError,
    OsppError,
    hex_code,
)
from ospp.core.printable import printable

Callback = Callable[..., None]  # a click command's function, as @reports makes it

DASHES = "-" * 39
PROCESSING = "---Processing" + "-" * 26
EXITING = "---Exiting" + "-" * 29
INTERNAL_ERROR = int(ExitStatus.INTERNAL)  # a bug; rerun with OSPP_DEBUG=1 for the traceback

EXIT_STATUS_HELP = (
    "Exit status: 0 success; 1 the licensing check said no (the licensing code is printed); "
    "2 usage error; 3 the licence store or another local file cannot be used; 4 a server "
    "(authority, KMS host, DNS) could not be reached; 70 internal error; 130 cancelled (Ctrl+C)."
)


class Result:
    """What a command has to say: ospp.vbs-style lines and the JSON payload.

    A plain class rather than a dataclass: every command imports it, and defining a dataclass
    compiles its methods at import time (a quarter of a millisecond each, on every start)."""

    __slots__ = ("banners", "data", "error", "failed", "lines", "printed")

    def __init__(
        self,
        lines: list[str] | None = None,
        data: dict[str, Any] | None = None,
        error: OsppError | None = None,  # set when the command failed after printing something
        banners: bool = True,
        failed: OsppError | None = None,  # a failure already shown in ``lines`` (exit status)
        printed: bool = False,  # the command printed its report as it went (ospp.cli.stream)
    ) -> None:
        self.lines = [] if lines is None else lines
        self.data = {} if data is None else data
        self.error = error
        self.banners = banners
        self.failed = failed
        self.printed = printed


def error_lines(exc: OsppError) -> list[str]:
    lines = [f"ERROR CODE: {hex_code(exc.code)}"]
    if exc.description:
        lines.append(f"ERROR DESCRIPTION: {exc.description}")
    lines.append(f"ERROR DETAIL: {exc.message}")
    if exc.hint:
        lines.append(f"HINT: {exc.hint}")
    return lines


SCHEMA_VERSION = 1  # of the --json envelope and the reports in it; see docs/JSON.md


def envelope(command: str, data: dict[str, Any] | None, error: OsppError | None) -> dict[str, Any]:
    """The one shape of every ``--json`` output: the report under ``data``, a failure under
    ``error`` (:meth:`OsppError.to_json`, the one error object), never fields beside them.

    ``data`` is null only when the command failed before it had anything to report.
    """
    return {
        "schema": SCHEMA_VERSION,
        "ok": error is None,
        "command": command,
        "data": data,
        "error": None if error is None else error.to_json(),
    }


def _print_json(payload: dict[str, Any]) -> None:
    import json  # here: text output, /dstatus's usual form, never needs it

    click.echo(json.dumps(payload, indent=2, sort_keys=False))


def needs_admin(what: str) -> None:
    """Refuse ``what`` to a standard user (``OSPP_USER``) before anything starts: the KMS
    host's keys and settings, and the fleet commands, are an administrator's, whatever
    /puserops allows on a single machine (0xC004F025, exit 1)."""
    from ospp.machine.client import require_admin

    require_admin(what)


def quiet() -> bool:
    """``ospp --quiet`` (or ``slmgr --quiet``): print nothing on success (text output only)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and _group_flag(ctx, "quiet")


def _group_flag(ctx: click.Context, name: str) -> bool:
    """Whether a group the command runs under (``ospp``, or ``slmgr`` on its own or under
    ``ospp``) was given the flag ``name``."""
    at: click.Context | None = ctx.parent
    while at is not None:
        if at.params.get(name):
            return True
        at = at.parent
    return False


def emit(result: Result, as_json: bool, command: str) -> int:
    problem = result.error or result.failed
    status = problem.exit_status if problem else ExitStatus.OK
    if result.printed or (problem is None and not as_json and quiet()):
        return int(status)
    if as_json:
        data = result.data if (result.data or problem is None) else None
        _print_json(envelope(command, data, problem))
        return int(status)
    lines = list(result.lines)
    if result.error is not None:
        lines += error_lines(result.error)
    # Lines carry what peers and clients sent (a host's message, a CMID, a workstation name):
    # no escape sequence reaches the terminal, and one line stays one line.
    lines = [printable(line) for line in lines]
    if not result.banners:
        for line in lines:
            click.echo(line)
        return int(status)
    click.echo(PROCESSING)
    click.echo(DASHES)
    for line in lines:
        click.echo(line)
    click.echo(DASHES)
    click.echo(EXITING)
    return int(status)


def run(command: str, as_json: bool, body: Callable[[], Result]) -> None:
    """Run ``body``, print its result or its error, and exit with the matching status."""
    try:
        result = body()
    except OsppError as exc:
        result = Result(error=exc)
    except KeyboardInterrupt:
        result = Result(error=Cancelled(interrupted=True))
    except BrokenPipeError:  # the reader went away ('ospp fleet status | head'): not a bug;
        raise  # click ends quietly with status 1, as for a pipe closed while printing
    except OSError as exc:
        # Output printed as it is read (fleet status) that cannot be written (a full disk, a
        # failing device): reported as such at the top (cli.failures), not as a bug. Files of
        # ospp's own are never met here: their failures are StoreErrors.
        if output_broken(exc):
            raise
        internal_error(exc, as_json, command)
    except Exception as exc:  # the one place foreign failures end up
        internal_error(exc, as_json, command)
    finally:
        close_all()
    code = emit(result, as_json, command)
    if code:
        sys.exit(code)


# How a write to standard output fails: a full disk or quota, a file too large, a failing
# device, a descriptor not open for writing. ospp's own files never raise these up to run():
# their failures are StoreErrors.
OUTPUT_FAILURES = frozenset(
    {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG, errno.EIO, errno.EBADF}
)


def output_broken(exc: OSError) -> bool:
    """Whether ``exc`` is standard output that cannot be written (not a bug of ospp's)."""
    return exc.errno in OUTPUT_FAILURES


def internal_error(exc: BaseException, as_json: bool, command: str) -> NoReturn:
    """Report a bug (on stdout as the usual JSON error with --json) and exit 70; with
    OSPP_DEBUG set, its traceback first."""
    if os.environ.get("OSPP_DEBUG"):
        import traceback

        traceback.print_exc()
    if as_json:
        emit(Result(error=InternalError(f"{type(exc).__name__}: {exc}")), True, command)
    else:
        click.echo(printable(f"ospp: internal error: {type(exc).__name__}: {exc}"), err=True)
        click.echo("ospp: this is a bug; rerun with OSPP_DEBUG=1 to see where.", err=True)
    sys.exit(INTERNAL_ERROR)


def tolerant_output() -> None:
    """Standard output in an encoding that cannot hold every character (cp1252, as Windows
    writes output redirected to a file or a pipe; a Latin-1 locale) writes a character it
    lacks as a backslash escape (``\\u6771``), as Python writes standard error, instead of
    failing the command half way, after it acted. (An ASCII one is written as UTF-8, as
    click does.)"""
    import codecs

    out = sys.stdout
    if not isinstance(out, io.TextIOWrapper) or out.errors != "strict":
        return
    try:
        utf8 = codecs.lookup(out.encoding).name == "utf-8"
    except LookupError:
        utf8 = False
    if not utf8:
        out.reconfigure(errors="backslashreplace")


def tolerant_input(stream: TextIO) -> TextIO:
    """``stream``, reading what its encoding cannot decode (a Latin-1 terminal typing under
    a UTF-8 locale) as U+FFFD, which a prompt then refuses as it refuses any other wrong
    character, instead of failing the command with an internal error. For the dialogues'
    prompts only: a file read from standard input still reports text that is not UTF-8."""
    if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
        with contextlib.suppress(io.UnsupportedOperation, ValueError):  # read from already
            stream.reconfigure(errors="replace")
    return stream


def console(main: Callable[[], object]) -> NoReturn:
    """Run a console script's ``main`` and end the process as soon as it is done.

    Tearing the interpreter down (collecting and freeing every module a command imported) is
    pure cost once a short command is over: about 4% of the instructions of ``ospp
    /dstatus`` (README, "Start-up"). So once the command's stores are closed, its ``atexit``
    handlers have run and its output is flushed, the process ends at once (``os._exit``, on
    every system). Python's own exit is kept wherever it does something more, so that each of
    these ends exactly as before: a message given to ``sys.exit``; another thread still
    running (Python waits for it); a tracer or profiler at work (``python -m cProfile``, a
    coverage run: they write their results at exit); and standard output or error that cannot
    be flushed (a reader that went away). ``main`` itself stays an ordinary function, which
    tests call in-process.
    """
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    if (
        not isinstance(code, int)
        or threading.active_count() > 1
        or sys.gettrace() is not None
        or sys.getprofile() is not None
    ):
        raise SystemExit(code)
    close_all()
    # A descriptor closed when the process started (``ospp ... >&-``) leaves its stream None.
    streams = [stream for stream in (sys.stdout, sys.stderr) if stream is not None]
    try:
        for stream in streams:
            stream.flush()
        # CPython's own call at exit (private, but in every CPython since 2.x): the handlers
        # run once, as the list is emptied.
        atexit._run_exitfuncs()
        for stream in streams:
            stream.flush()
    except (OSError, ValueError):  # output that is gone or closed: Python reports it
        raise SystemExit(code) from None
    os._exit(code)


def json_in_argv(args: Sequence[str]) -> bool:
    """Whether ``--json`` is anywhere on the command line (before a ``--``)."""
    for word in args:
        if word == "--":
            return False
        if word.lower() == "--json":
            return True
    return False


def json_wanted(ctx: click.Context, as_json: bool) -> bool:
    return as_json or _group_flag(ctx, "as_json")


def command_name(ctx: click.Context) -> str:
    """The command's path without the program name (``kms install-key``), as JSON reports it;
    a root group with a ``json_name`` (the ``slmgr`` command) keeps it (``slmgr ipk``), as
    when it runs under ``ospp``."""
    names: list[str] = []
    while ctx.parent is not None:
        names.append(ctx.command.name or "")
        ctx = ctx.parent
    root = getattr(ctx.command, "json_name", None)
    if root:
        names.append(root)
    return " ".join(reversed(names)) or ctx.command.name or ""


def _reporting(fn: Callable[..., Result], json_allowed: bool) -> Callback:
    @functools.wraps(fn)
    def callback(*args: Any, as_json: bool = False, **kwargs: Any) -> None:
        ctx = click.get_current_context()
        wanted = json_allowed and json_wanted(ctx, as_json)
        run(command_name(ctx), wanted, lambda: fn(*args, **kwargs))

    return callback


def reports(fn: Callable[..., Result]) -> Callback:
    """Make a function that returns a :class:`Result` into a click callback.

    The callback takes the ``as_json`` flag (from ``--json`` on the command or on ``ospp``),
    runs ``fn`` with the other parameters inside :func:`run`, prints and exits. The command's
    name in the JSON envelope is its path without the program name (``kms status``). Put it
    below the click decorators::

        @kms_group.command("status")
        @JSON_OPTION
        @reports
        def status() -> Result: ...
    """
    return _reporting(fn, json_allowed=True)


def reports_text(fn: Callable[..., Result]) -> Callback:
    """Like :func:`reports`, for commands whose output is never JSON (a server's log lines, a
    file to save): ``ospp --json`` does not change what they print. Errors are still printed
    and set the exit status the same way."""
    return _reporting(fn, json_allowed=False)


JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON instead of ospp.vbs text."
)


def root_flags(done: str, also: str = "") -> Callable[[Callback], Callback]:
    """``--json`` and ``-q``/``--quiet`` on a root group (``ospp``, ``slmgr``): every command
    under it reads them, wherever they were typed."""

    def deco(fn: Callback) -> Callback:
        fn = click.option(
            "--quiet",
            "-q",
            is_flag=True,
            help=f"Print nothing when {done} succeeds (the exit status says so; failures and "
            f"--json output are still printed){also}. Like --json, it may come anywhere on "
            "the command line.",
        )(fn)
        return click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")(fn)

    return deco


COMPUTER_ARGUMENT = click.argument(
    "computer", required=False, metavar="[COMPUTERNAME]", shell_complete=complete.machines
)


# -- the ospp.vbs slash syntax -----------------------------------------------------------------
