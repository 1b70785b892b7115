"""Shared CLI machinery: the ospp.vbs slash syntax, --json, and the one place errors are caught.

A command's function returns a :class:`Result` (text lines in ospp.vbs form plus the same facts
as JSON) or raises :class:`~ospp.errors.OsppError`; :func:`run` prints either and sets the exit
status.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from ospp.cli import complete
from ospp.core.db import close_all

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem
from ospp.core.errors import (
    Cancelled,
    ExitStatus,
    InternalError,
    OsppError,
    UsageError,
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


@dataclass
class Result:
    """What a command has to say: ospp.vbs-style lines and the JSON payload."""

    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: OsppError | None = None  # set when the command failed after printing something
    banners: bool = True
    failed: OsppError | None = None  # a failure already shown in ``lines`` (sets exit status)


def error_lines(exc: OsppError) -> list[str]:
    lines = [f"ERROR CODE: {hex_code(exc.code)}"]
    if exc.description:
        lines.append(f"ERROR DESCRIPTION: {exc.description}")
    lines.append(f"ERROR DETAIL: {exc.message}")
    if exc.hint:
        lines.append(f"HINT: {exc.hint}")
    return lines


def _print_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False))


def quiet() -> bool:
    """``ospp --quiet``: print nothing on success (text output only)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool(ctx.find_root().params.get("quiet"))


def emit(result: Result, as_json: bool, command: str) -> int:
    problem = result.error or result.failed
    status = problem.exit_status if problem else ExitStatus.OK
    if problem is None and not as_json and quiet():
        return int(status)
    if as_json:
        payload: dict[str, Any] = {"ok": problem is None, "command": command}
        payload.update(result.data)
        if problem is not None:
            payload["error"] = problem.to_json()
        _print_json(payload)
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
    except Exception as exc:  # the one place foreign failures end up
        if os.environ.get("OSPP_DEBUG"):
            import traceback

            traceback.print_exc()
        _internal_error(exc, as_json, command)
    finally:
        close_all()
    code = emit(result, as_json, command)
    if code:
        sys.exit(code)


def _internal_error(exc: BaseException, as_json: bool, command: str) -> None:
    """Report a bug (on stdout as the usual JSON error with --json) and exit 70."""
    if as_json:
        emit(Result(error=InternalError(f"{type(exc).__name__}: {exc}")), True, command)
    else:
        click.echo(printable(f"ospp: internal error: {type(exc).__name__}: {exc}"), err=True)
        click.echo("ospp: this is a bug; rerun with OSPP_DEBUG=1 to see where.", err=True)
    sys.exit(INTERNAL_ERROR)


def json_in_argv(args: Sequence[str]) -> bool:
    """Whether ``--json`` is anywhere on the command line (before a ``--``)."""
    for word in args:
        if word == "--":
            return False
        if word.lower() == "--json":
            return True
    return False


def json_wanted(ctx: click.Context, as_json: bool) -> bool:
    root = ctx.find_root()
    return as_json or bool(root.params.get("as_json"))


def command_name(ctx: click.Context) -> str:
    """The command's path without the program name (``kms install-key``), as JSON reports it."""
    names: list[str] = []
    while ctx.parent is not None:
        names.append(ctx.command.name or "")
        ctx = ctx.parent
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
COMPUTER_ARGUMENT = click.argument(
    "computer", required=False, metavar="[COMPUTERNAME]", shell_complete=complete.machines
)


# -- the ospp.vbs slash syntax -----------------------------------------------------------------


class SlashCommand(click.Command):
    """A command usable as ``/name[:value]``; ``slash_value`` says where the value goes.

    None: the command takes no value; "argument": the first argument; "--opt": that option.
    """

    def __init__(
        self,
        *args: Any,
        slash_value: str | None = None,
        value_required: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.slash_value = slash_value
        self.value_required = value_required


HELP_WORDS = ("/?", "/help", "-?", "/h")
WHOLE = 10_000  # a command's summary is shown whole (its first sentence), never cut with "..."


class Group(click.Group):
    """A command group whose help lists each command's summary whole."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(WHOLE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class SlashGroup(click.Group):
    """A group that also accepts ``/name``, ``/name:value`` and ``/?`` as ospp.vbs does.

    With ``--json`` anywhere on the command line, click's own usage errors (and any bug met
    while parsing) are printed as the same JSON error object as every other error.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or not json_in_argv(argv):
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            command = _command_of(getattr(exc, "ctx", None))
            error = UsageError(exc.format_message(), _usage_hint(exc))
            if not isinstance(exc, click.UsageError):  # click's other errors exit 1
                error.exit_status = ExitStatus.LICENSING
            sys.exit(emit(Result(error=error), True, command))
        except click.exceptions.Abort:
            sys.exit(emit(Result(error=Cancelled(interrupted=True)), True, ""))
        except Exception as exc:  # a bug met before a command ran
            if os.environ.get("OSPP_DEBUG"):
                import traceback

                traceback.print_exc()
            _internal_error(exc, True, "")
        sys.exit(rv if isinstance(rv, int) else 0)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].lower() in HELP_WORDS:
            args = ["--help", *args[1:]]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # 'ospp /dstatus /?' asks for that command's help, as 'ospp /?' does for all
        args = (
            [args[0], *("--help" if w.lower() in HELP_WORDS else w for w in args[1:])]
            if args
            else args
        )
        first = args[0] if args else ""
        if first.startswith("/") and len(first) > 1:
            args = self._expand_slash(ctx, first, args[1:])
        elif first and not first.startswith("-") and self.get_command(ctx, first.lower()) is None:
            raise click.UsageError(f"unknown command {first!r}; run 'ospp /?' for the list", ctx)
        return super().resolve_command(ctx, args)

    def _expand_slash(self, ctx: click.Context, word: str, rest: list[str]) -> list[str]:
        name, sep, value = word[1:].partition(":")
        name = name.lower()
        cmd = self.get_command(ctx, name)
        if not isinstance(cmd, SlashCommand):
            raise click.UsageError(f"unknown option '/{name}'; run 'ospp /?' for the list", ctx)
        if cmd.slash_value is None:
            if sep:
                raise click.UsageError(f"/{name} takes no value, but ':{value}' was given", ctx)
            return [name, *rest]
        if not value:
            if cmd.value_required:
                raise click.UsageError(f"/{name} needs a value: /{name}:{value_metavar(cmd)}", ctx)
            if sep:
                raise click.UsageError(f"/{name}: the value after ':' is empty", ctx)
            return [name, *rest]
        if cmd.slash_value != "argument":
            return [name, f"{cmd.slash_value}={value}", *rest]
        if value.startswith("-"):
            # A value is never an option (/setprt:-1, /ddescr:-0x1): put it after '--', the
            # options given with it before.
            options = [word for word in rest if word.startswith("-")]
            positional = [word for word in rest if not word.startswith("-")]
            return [name, *options, "--", value, *positional]
        return [name, value, *rest]

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        if incomplete.startswith("/") and ":" in incomplete:
            return self._complete_value(ctx, incomplete)
        if incomplete.startswith("/"):
            items = []
            for name in self.list_commands(ctx):
                cmd = self.get_command(ctx, name)
                if not isinstance(cmd, SlashCommand) or cmd.hidden:
                    continue
                word = f"/{name}" + (":" if cmd.slash_value and cmd.value_required else "")
                if word.startswith(incomplete.lower()):
                    items.append(CompletionItem(word, help=cmd.get_short_help_str(WHOLE)))
            return items
        return super().shell_complete(ctx, incomplete)

    def _complete_value(self, ctx: click.Context, word: str) -> list[CompletionItem]:
        """Complete the value of ``/name:value`` as the command completes its value."""
        from click.shell_completion import CompletionItem

        head, _, value = word.partition(":")
        cmd = self.get_command(ctx, head[1:].lower())
        if not isinstance(cmd, SlashCommand) or cmd.slash_value is None:
            return []
        for param in cmd.params:
            if (cmd.slash_value == "argument" and isinstance(param, click.Argument)) or (
                isinstance(param, click.Option) and cmd.slash_value in param.opts
            ):
                sub = cmd.make_context(cmd.name, [], parent=ctx, resilient_parsing=True)
                return [
                    CompletionItem(f"{head}:{item.value}", type=item.type, help=item.help)
                    for item in param.shell_complete(sub, value)
                ]
        return []

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        verbs: list[tuple[str, str]] = []
        others: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            if isinstance(cmd, SlashCommand):
                verbs.append((slash_form(name, cmd), cmd.get_short_help_str(WHOLE)))
            else:
                others.append((name, cmd.get_short_help_str(WHOLE)))
        if verbs:
            with formatter.section("ospp.vbs options (also as 'ospp NAME VALUE')"):
                formatter.write_dl(verbs)
        if others:
            with formatter.section("Commands"):
                formatter.write_dl(others)


def _command_of(ctx: click.Context | None) -> str:
    return command_name(ctx) if ctx is not None and ctx.parent is not None else ""


def _usage_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.parent is not None:
        return f"Run '{ctx.command_path} --help' for its options."
    return "Run 'ospp /?' for the list of commands."


def slash_form(name: str, cmd: SlashCommand) -> str:
    if cmd.slash_value is None:
        return f"/{name}"
    metavar = value_metavar(cmd)
    return f"/{name}:{metavar}" if cmd.value_required else f"/{name}[:{metavar}]"


def value_metavar(cmd: click.Command) -> str:
    slash_value = getattr(cmd, "slash_value", None)
    for param in cmd.params:
        if slash_value == "argument" and isinstance(param, click.Argument):
            return param.metavar or (param.name or "VALUE").upper()
        if isinstance(param, click.Option) and slash_value in param.opts:
            return (param.metavar or param.name or "VALUE").upper()
    return "VALUE"


def verb(
    name: str,
    *,
    slash_value: str | None = None,
    value_required: bool = True,
    params: Sequence[Callable[[Callback], Callback]] = (),
) -> Callable[[Callback], SlashCommand]:
    """Declare an ospp.vbs verb: ``/name[:value]`` and ``ospp name [value] [COMPUTERNAME]``."""

    def deco(fn: Callback) -> SlashCommand:
        f = JSON_OPTION(fn)
        f = COMPUTER_ARGUMENT(f)
        for p in reversed(params):
            f = p(f)
        return click.command(
            name,
            cls=SlashCommand,
            slash_value=slash_value,
            value_required=value_required,
            epilog=EXIT_STATUS_HELP,
        )(f)

    return deco
