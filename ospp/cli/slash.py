"""The ospp.vbs command language on click: ``/name[:value]`` verbs, ``/?`` for help, whole help
summaries, TAB completion of the slash forms, and the ``verb`` declaration every ospp.vbs
option uses. What fails outside a command (click's usage errors, output that cannot be
written) is reported by cli.failures, imported only then.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from ospp.cli.base import (
    COMPUTER_ARGUMENT,
    EXIT_STATUS_HELP,
    JSON_OPTION,
    Callback,
    internal_error,
    json_in_argv,
    output_broken,
    quiet,
    tolerant_output,
)

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class GroupedValueCommand(click.Command):
    """A command whose first argument may be a value read out in digit groups (a
    confirmation ID): ``digit_groups`` is (what it is called, how many digits), and its
    groups given as separate words are refused as such."""

    def __init__(
        self, *args: Any, digit_groups: tuple[str, int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.digit_groups = digit_groups

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if self.digit_groups is not None:
            _refuse_split_groups(self, ctx, *self.digit_groups, args)
        return super().parse_args(ctx, args)


class SlashCommand(GroupedValueCommand):
    """A command usable as ``/name[:value]``; ``slash_value`` says where the value goes.

    None: the command takes no value; "argument": the first argument; "--opt": that option.
    ``keep_case``: the value is a path, kept as it was typed (ospp.vbs lower-cases it, which
    Windows ignores in a path and other systems do not).
    """

    def __init__(
        self,
        *args: Any,
        slash_value: str | None = None,
        value_required: bool = True,
        keep_case: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.slash_value = slash_value
        self.value_required = value_required
        self.keep_case = keep_case

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _credentials_as_words(self, ctx, args))


def _refuse_split_groups(
    cmd: click.Command, ctx: click.Context, name: str, digits: int, args: list[str]
) -> None:
    """A confirmation ID typed with spaces and no quotes reaches ``ospp /actcid`` or ``ospp
    kms actcid`` as several words: the first would be taken for the whole ID and the next for
    a computer name, USER and PASSWORD, or refused as extra arguments. It is said as what it
    is."""
    options, words = _options_and_words(cmd, ctx, args)
    if any(a in ("-i", "--interactive") for a in options):  # the ID is asked for instead
        return
    split = split_groups(words, digits)
    if split:
        raise click.UsageError(split_groups_message(name, words, split), ctx)


def _options_and_words(
    cmd: click.Command, ctx: click.Context, args: list[str], words_from: int | None = None
) -> tuple[list[str], list[str]]:
    """``args`` parted into the command's options (with their values) and its positional
    words: every word after ``--``, and before it each that is no option nor an option's
    value. A word starting with '-' that is none of the command's options is left with the
    options, for click to judge, unless ``words_from`` words came before it: it is a word
    then."""
    takes_value = _option_words(cmd, ctx)
    options: list[str] = []
    words: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            words += args[i + 1 :]
            break
        head = word.split("=", 1)[0]
        dashed = word.startswith("-") and len(word) > 1
        if dashed and (head in takes_value or words_from is None or len(words) < words_from):
            options.append(word)
            if takes_value.get(head) and "=" not in word and i + 1 < len(args):
                i += 1
                options.append(args[i])
        else:
            words.append(word)
        i += 1
    return options, words


def _option_words(cmd: click.Command, ctx: click.Context) -> dict[str, bool]:
    """Each of the command's option words, and whether it takes a value."""
    takes_value: dict[str, bool] = {}
    for param in cmd.params:
        if isinstance(param, click.Option):
            for opt in (*param.opts, *param.secondary_opts):
                takes_value[opt] = not (param.is_flag or param.count)
    for opt in ctx.help_option_names:
        takes_value[opt] = False
    return takes_value


CID_DIGITS = 120  # a confirmation ID typed: 20 groups of 6 (ospp.protocol.phone)


def split_groups(words: Sequence[str], digits: int) -> int:
    """How many of ``words`` are one value of ``digits`` digits read out in groups (a
    confirmation ID) and typed as separate words; 0 when they are not. A word of groups is
    digits, with dashes between groups (``123456-234567``). A computer name may be all
    digits, so only a first word short of the digits followed by a word of groups is taken
    for one split."""

    def is_groups(word: str, also: str = "-") -> bool:
        return (
            word.isascii()
            and any(c.isdigit() for c in word)
            and all(c.isdigit() or c in also for c in word)
        )

    if len(words) < 2 or not is_groups(words[0], "- ") or not is_groups(words[1]):
        return 0
    if sum(c.isdigit() for c in words[0]) >= digits:
        return 0
    split = 1
    while split < len(words) and is_groups(words[split]):
        split += 1
    return split


def split_groups_message(name: str, words: Sequence[str], split: int) -> str:
    return (
        f"the {name} is one argument, and it came as {split} separate words: put it in "
        f"quotes, or join its groups with dashes ({words[0]}-{words[1]}-...)"
    )


def _paths(prefix: str, most: int = 1000) -> list[str]:
    """The paths that start with ``prefix``, a directory's with its separator: a shell's file
    completion, for a path that follows ``/name:``."""
    import glob
    import itertools

    found = itertools.islice(glob.iglob(glob.escape(prefix) + "*"), most)
    return sorted(p + os.sep if os.path.isdir(p) else p for p in found)


def _credentials_as_words(cmd: click.Command, ctx: click.Context, args: list[str]) -> list[str]:
    """ospp.vbs's USER and PASSWORD are plain words, whatever they start with: a password
    such as ``-Hunter2`` must not be taken for an option (nor echoed in "no such option").

    A word starting with '-' that is none of the command's options is taken as a positional
    argument once the arguments before USER have been given; the command's own options keep
    their meaning wherever they are. Anything else is left for click to judge.
    """
    names = [p.name for p in cmd.params if isinstance(p, click.Argument)]
    if "user" not in names:
        return args
    options, words = _options_and_words(cmd, ctx, args, words_from=names.index("user"))
    return [*options, "--", *words]


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


class ReportingGroup(click.Group):
    """A root group whose usage errors are reported as every other error: with ``--json``
    anywhere on the command line, click's own usage errors (and any bug met while parsing)
    are printed as the same JSON error object; without it, click's usage error is followed by
    the licensing code. The ``ospp`` and the ``slmgr`` commands are both one."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        program = prog_name or "ospp"  # as its messages name it: ospp, or slmgr
        _stand_in_for_closed_streams()
        tolerant_output()
        if any(param.name == "quiet" for param in self.params):
            argv = _quiet_first(argv)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        if not json_in_argv(argv):
            try:
                rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            except click.ClickException as exc:  # what click prints, and the licensing code
                from ospp.cli.failures import click_error

                click_error(exc)
            except click.exceptions.Abort:
                click.echo("Aborted!", err=True)
                sys.exit(1)
            except BrokenPipeError:
                raise
            except OSError as exc:  # every other failure of a command is caught in run()
                if not output_broken(exc):
                    raise
                from ospp.cli.failures import output_failed

                output_failed(exc, program)
            sys.exit(rv if isinstance(rv, int) else 0)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            from ospp.cli.failures import json_click_error

            json_click_error(exc, program)
        except click.exceptions.Abort:
            from ospp.cli.failures import json_cancelled

            json_cancelled(program)
        except BrokenPipeError:
            raise
        except Exception as exc:  # output that cannot be written, or a bug met outside run()
            if isinstance(exc, OSError) and output_broken(exc):
                from ospp.cli.failures import output_failed

                output_failed(exc, program)
            internal_error(exc, True, "")
        sys.exit(rv if isinstance(rv, int) else 0)


class SlashGroup(ReportingGroup):
    """A group that also accepts ``/name``, ``/name:value`` and ``/?`` as ospp.vbs does."""

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
        # ospp.vbs lower-cases its whole first argument, value included: /sethst:KMS1 sets
        # kms1, and /dstatus prints it so.
        name, sep, value = word[1:].lower().partition(":")
        cmd = self.get_command(ctx, name)
        if not isinstance(cmd, SlashCommand):
            raise click.UsageError(f"unknown option '/{name}'; run 'ospp /?' for the list", ctx)
        if cmd.keep_case:
            value = word[1:].partition(":")[2]
        if cmd.slash_value is None:
            if sep:
                raise click.UsageError(
                    f"/{name} takes no value, but ':{value}' was given", _of(cmd, name, ctx)
                )
            return [name, *rest]
        if not value:
            if not sep and _asks_help(ctx, rest):
                return [name, *rest]  # '/inpkey /?': its help, for which no value is missing
            if cmd.value_required:
                raise click.UsageError(
                    f"/{name} needs a value: /{name}:{value_metavar(cmd)}", _of(cmd, name, ctx)
                )
            if sep:
                raise click.UsageError(
                    f"/{name}: the value after ':' is empty", _of(cmd, name, ctx)
                )
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
                items = param.shell_complete(sub, value)
                if any(item.type in ("file", "dir") for item in items):
                    # a path behind '/name:', which no shell completes as one: list it here
                    return [CompletionItem(f"{head}:{path}") for path in _paths(value)]
                return [
                    CompletionItem(f"{head}:{item.value}", type=item.type, help=item.help)
                    for item in items
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


QUIET_WORDS = ("-q", "--quiet")


def _quiet_first(argv: list[str]) -> list[str]:
    """``-q``/``--quiet`` anywhere before a ``--``, moved to the front where the group reads
    it: scripts put flags at the end (``ospp install-product P PC1 --quiet``), as ``--json``
    may be."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [word for word in argv[:end] if word in QUIET_WORDS]
    if not flags:
        return argv
    return [*flags, *(word for word in argv[:end] if word not in QUIET_WORDS), *argv[end:]]


def _asks_help(ctx: click.Context, words: list[str]) -> bool:
    """Whether ``words`` (after the slash word, ``/?`` already made ``--help``) ask for help
    before any ``--``."""
    end = words.index("--") if "--" in words else len(words)
    return any(word.lower() in ctx.help_option_names for word in words[:end])


def _of(cmd: click.Command, name: str, ctx: click.Context) -> click.Context:
    """The context of the command a slash word named, for its usage errors: they belong to it
    (``"command": "inpkey"`` under ``--json``), though it never started."""
    return click.Context(cmd, info_name=name, parent=ctx)


def _stand_in_for_closed_streams() -> None:
    """A process started with standard input or output closed (``<&-``, ``>&-``) has None
    for them. Input reads as empty (end of input at once, which every reader handles);
    output fails at its first write (cli.failures.ClosedOutput)."""
    if sys.stdin is None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    if sys.stdout is None:
        from ospp.cli.failures import ClosedOutput

        sys.stdout = ClosedOutput()


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


# cscript ospp.vbs /option[:value] [ComputerName] [User] [Password]: scripts that manage
# remote computers pass credentials for WMI. The simulated machines need none.
USER_ARGUMENT = click.argument("user", required=False, metavar="[USER]")
PASSWORD_ARGUMENT = click.argument("password", required=False, metavar="[PASSWORD]")
CREDENTIALS_NOTE = (
    "ospp: the USER and PASSWORD after the computer name are ignored "
    "(simulated machines need no login)"
)
CREDENTIALS_HELP = (
    "USER and PASSWORD, which ospp.vbs uses to reach a remote computer, are accepted and "
    "ignored, with a note on stderr: simulated machines need no login (OSPP_USER runs a "
    "command as a standard user)."
)


def verb(
    name: str,
    *,
    slash_value: str | None = None,
    value_required: bool = True,
    keep_case: bool = False,
    digit_groups: tuple[str, int] | None = None,
    params: Sequence[Callable[[Callback], Callback]] = (),
) -> Callable[[Callback], SlashCommand]:
    """Declare an ospp.vbs verb: ``/name[:value]`` and ``ospp name [value] [COMPUTERNAME]``,
    with ospp.vbs's USER and PASSWORD after the computer name, accepted and ignored.
    ``digit_groups``: the value is (what it is called, how many digits) read out in groups,
    whose groups given as separate words are refused as such."""

    def deco(fn: Callback) -> SlashCommand:
        @functools.wraps(fn)
        def without_credentials(
            *args: Any, user: str | None = None, password: str | None = None, **kwargs: Any
        ) -> None:
            # A simulated machine needs no login: never used nor shown. Said, so that a second
            # computer name ('ospp dstatus pc1 pc2') does not pass unnoticed.
            if user is not None and not quiet():
                click.echo(CREDENTIALS_NOTE, err=True)
            fn(*args, **kwargs)

        f: Callback = JSON_OPTION(without_credentials)
        f = PASSWORD_ARGUMENT(f)
        f = USER_ARGUMENT(f)
        f = COMPUTER_ARGUMENT(f)
        for p in reversed(params):
            f = p(f)
        return click.command(
            name,
            cls=SlashCommand,
            slash_value=slash_value,
            value_required=value_required,
            keep_case=keep_case,
            digit_groups=digit_groups,
            epilog=f"{CREDENTIALS_HELP}\n\n{EXIT_STATUS_HELP}",
        )(f)

    return deco
