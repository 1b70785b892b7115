"""The ``slmgr`` command group and its slash syntax, shared by the slmgr option modules.

slmgr.vbs takes space-separated values (``slmgr /ipk KEY``, ``/skms host:port``, ``/sai 60``)
and option names in any case, with ``/`` or ``-``. A trailing COMPUTERNAME selects another
simulated machine, as with ospp; so does slmgr.vbs's own order, ``slmgr COMPUTERNAME [USER
PASSWORD] /option``, whose USER and PASSWORD are accepted and ignored. An Activation ID is a
GUID, so a word that is one is taken as the Activation ID and any other word as the computer
name.

On this machine (no computer name), the KMS host in OSPP_KMS_HOME is a licence too: once a
host key (CSVLK) is installed it is the primary licence, as on a Windows KMS host, so /ato,
/dli, /dlv, /xpr, /dti, /atp and /upk act on it (or on it when named by its Activation ID).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ospp.cli import complete
from ospp.cli.base import EXIT_STATUS_HELP, JSON_OPTION, Result, reports, root_flags
from ospp.cli.slash import CREDENTIALS_NOTE, ReportingGroup
from ospp.cli.slmgr_render import error_lines
from ospp.core.errors import OsppError, UsageError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from ospp.kmshost.state import KmsHost
    from ospp.machine.store import MachineStore

EXIT_HELP = (
    EXIT_STATUS_HELP + " slmgr.vbs itself exits with the HRESULT; here the HRESULT is on the "
    "'Error:' line and in the JSON (error.code)."
)
HELP = f"""slmgr.vbs's options on the simulated machines and the KMS host.

Options work as in slmgr.vbs: slmgr /ipk KEY, slmgr /dli, slmgr /skms host:port, slmgr /sai 60
(names in any case, with / or -). A trailing COMPUTERNAME selects another simulated machine,
as does slmgr.vbs's order, the computer name first: slmgr COMPUTERNAME [USER PASSWORD] /option
(USER and PASSWORD are accepted and ignored, with a note on stderr: simulated machines need no
login). Activation IDs are the SKU ids of the catalog (ospp products); without one a command
acts on the licence whose key was installed last, or on this machine's KMS host once it has a
key.

{EXIT_HELP}
"""
COMPUTER_WORD = "[COMPUTERNAME]"
ACT_WORDS = "[ActID] [COMPUTERNAME]"
_HELP_WORDS = ("/?", "/help", "-?", "/h", "-help")
_FLAG_WORDS = ("-q", "--quiet", "--json")
# slmgr.vbs's order: global, advanced, KMS client, KMS host options.
ORDER = (
    "ipk",
    "ato",
    "dli",
    "dlv",
    "xpr",
    "cpky",
    "ilc",
    "rearm",
    "upk",
    "dti",
    "atp",
    "skms",
    "ckms",
    "skms-domain",
    "ckms-domain",
    "skhc",
    "ckhc",
    "act-type",
    "sprt",
    "sai",
    "sri",
    "sdns",
    "cdns",
    "spri",
    "cpri",
)


class SlmgrGroup(ReportingGroup):
    """A group that takes slmgr.vbs's ``/option`` and ``-option`` forms, and ``/?``.

    Run as the ``slmgr`` command it is the root, and reports its usage errors as ``ospp
    slmgr`` does; in JSON its options are named as under ospp (``slmgr ipk``)."""

    json_name = "slmgr"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # slmgr's own flags (-q, --json) may come anywhere before a '--': between the
        # machine name, USER, PASSWORD and the option too. They are read first, and the
        # forms below without them.
        end = args.index("--") if "--" in args else len(args)
        flags = [word for word in args[:end] if word.lower() in _FLAG_WORDS]
        args = [word for word in args[:end] if word.lower() not in _FLAG_WORDS] + args[end:]
        if (
            ctx.resilient_parsing
            and len(args) in (1, 3)
            and not any(word.startswith(("/", "-")) for word in args[:2])
            and self.get_command(ctx, args[0].lower()) is None
        ):
            # TAB after 'slmgr MACHINE [USER PASSWORD]': the option comes next, offered as
            # after 'slmgr'
            args = []
        if (
            len(args) > 3
            and not args[0].startswith(("/", "-"))
            and not args[1].startswith(("/", "-"))
            and args[3].startswith(("/", "-"))
            and self.get_command(ctx, args[3][1:].lower()) is not None
            and self.get_command(ctx, args[0].lower()) is None
        ):
            # 'slmgr MACHINE USER PASSWORD /option': the credentials slmgr.vbs takes for a
            # remote computer are accepted and ignored, as ospp's verbs do (said when the
            # command runs, never while the shell completes it)
            if not ctx.resilient_parsing and not _quiet(ctx, flags):
                click.echo(CREDENTIALS_NOTE, err=True)
            args = [args[0], *args[3:]]
        if (
            len(args) > 1
            and args[1].startswith(("/", "-"))
            and not args[0].startswith(("/", "-"))
            and self.get_command(ctx, args[0].lower()) is None
        ):
            # slmgr.vbs's own order, 'slmgr MACHINE /option ...': the name goes last here
            args = [*args[1:], args[0]]
        if args and args[0].lower() in _HELP_WORDS:
            args = ["--help", *args[1:]]
        elif args and args[0].startswith("-") and not args[0].startswith("--"):
            name = args[0][1:].lower()
            if self.get_command(ctx, name) is not None:
                args = [name, *args[1:]]
        args = [*flags, *args]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        first = args[0] if args else ""
        name = first[1:] if first.startswith("/") and len(first) > 1 else first
        if name and self.get_command(ctx, name.lower()) is None:
            raise click.UsageError(
                f"Unrecognized option: {first}; run 'slmgr /?' for the list", ctx
            )
        return super().resolve_command(ctx, [name.lower(), *args[1:]] if name else args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        if incomplete.startswith(("/", "-")) and not incomplete.startswith("--"):
            lead = incomplete[0]  # slmgr.vbs takes -dlv as it takes /dlv
            offered = [
                CompletionItem(f"{lead}{name}", help=cmd.get_short_help_str())
                for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None
                and f"{lead}{name}".startswith(incomplete.lower())
            ]
            if lead == "-":  # and the group's own options (-h)
                offered += super().shell_complete(ctx, incomplete)
            return offered
        return super().shell_complete(ctx, incomplete)

    def list_commands(self, ctx: click.Context) -> list[str]:
        known = [name for name in ORDER if name in self.commands]
        return known + sorted(set(self.commands) - set(known))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None:
                pieces = [p.make_metavar(ctx) for p in cmd.params if isinstance(p, click.Argument)]
                rows.append((" ".join([f"/{name}", *pieces]), cmd.get_short_help_str(60)))
        with formatter.section("slmgr.vbs options"):
            formatter.write_dl(rows)


def _quiet(ctx: click.Context, flags: list[str]) -> bool:
    """Whether -q was given to slmgr (``flags``, not parsed yet) or to ``ospp`` above it."""
    if any(flag.lower() in ("-q", "--quiet") for flag in flags):
        return True
    at = ctx.parent
    while at is not None:
        if at.params.get("quiet"):
            return True
        at = at.parent
    return False


@click.group(
    "slmgr",
    cls=SlmgrGroup,
    help=HELP,
    context_settings={"token_normalize_func": str.lower, "help_option_names": ["--help", "-h"]},
)
@root_flags("an option")
def slmgr(as_json: bool, quiet: bool) -> None:
    pass


def option(
    name: str, *params: Callable[[Any], Any], values: bool = False
) -> Callable[[Callable[..., Result]], click.Command]:
    """Declare an slmgr option whose body returns a Result; errors print as slmgr's.

    ``values``: its arguments are values that may start with '-' (a port, minutes, an
    activation type): '-5' is taken as the value, for the option to say what is wrong with
    it, rather than as an unknown option."""

    def deco(fn: Callable[..., Result]) -> click.Command:
        @functools.wraps(fn)
        def body(*args: Any, **kwargs: Any) -> Result:
            try:
                result = fn(*args, **kwargs)
            except OsppError as exc:
                result = Result(error_lines(exc), failed=exc)
            result.banners = False
            return result

        f: Any = reports(body)
        f = JSON_OPTION(f)
        for param in reversed(params):
            f = param(f)
        settings = {"ignore_unknown_options": True} if values else {}
        return slmgr.command(name, epilog=EXIT_HELP, context_settings=settings)(f)

    return deco


def words_argument(metavar: str = ACT_WORDS) -> Callable[[Any], Any]:
    """The optional words after an option (an ActID, a computer name...): TAB offers the
    machines, and ``all`` where the option takes it."""
    offered = complete.all_or_machines if "|all]" in metavar else complete.machines
    return click.argument("words", nargs=-1, metavar=metavar, shell_complete=offered)


def split_words(
    words: tuple[str, ...], *, act_id: bool = True, all_ok: bool = False
) -> tuple[str | None, str | None]:
    """(Activation ID, computer name) from the optional words after an option."""
    from ospp.machine.slmgr import is_activation_id

    rest = list(words)
    act = None
    if act_id and rest and (is_activation_id(rest[0]) or (all_ok and rest[0].lower() == "all")):
        act = rest.pop(0)
    computer = rest.pop(0) if rest else None
    if rest:
        expected = "[ActID] [COMPUTERNAME]" if act_id else "[COMPUTERNAME]"
        raise UsageError(
            f"unexpected {rest[0]!r} after {' '.join(words[: len(words) - len(rest)])!r}; "
            f"this option takes {expected}",
            "An Activation ID is a GUID (slmgr /dlv all lists them).",
        )
    return act, computer


def open_machine(computer: str | None) -> MachineStore:
    from ospp.machine import client

    return client.open_machine(computer)


def local_host(computer: str | None, act_id: str | None) -> KmsHost | None:
    """This machine's KMS host, when the command is for it (see the module docstring)."""
    from ospp.core.clock import clock_from_env
    from ospp.core.paths import LOCAL_MACHINE, kms_home, machine_name
    from ospp.kmshost import settings

    if act_id is not None and act_id.lower() == "all":
        act_id = None
    if machine_name(computer) != LOCAL_MACHINE:
        return None
    host = settings.existing(Path(kms_home()), clock_from_env())
    if host is None:
        return None
    if act_id is None or act_id.strip("{}").lower() in settings.host_sku_ids(host):
        return host
    return None


def open_host() -> KmsHost:
    from ospp.core.clock import clock_from_env
    from ospp.core.paths import kms_home
    from ospp.kmshost.state import KmsHost

    return KmsHost.open(Path(kms_home()), clock_from_env())


def host_sku(host: KmsHost, act_id: str | None = None) -> str:
    from ospp.kmshost import settings

    return settings.host_sku_id(host, act_id)
