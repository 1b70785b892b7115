"""What TAB completion offers for a value: machine names, product ids and fixed values.

Each function here is a click ``shell_complete`` callback. The shell runs ``ospp`` on every TAB,
so they import only what they read (the catalog, the machines directory) and never fail: a
completion that cannot be computed offers nothing rather than printing over the prompt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

Completer = Callable[[click.Context, click.Parameter, str], list["CompletionItem"]]


def machines(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The simulated machines: directories under $OSPP_HOME/machines holding a licence store."""
    from click.shell_completion import CompletionItem

    from ospp.core.errors import OsppError
    from ospp.core.paths import machine_name, ospp_home

    try:
        with os.scandir(os.path.join(ospp_home(), "machines")) as entries:
            found = sorted(
                entry.name
                for entry in entries
                if os.path.isfile(os.path.join(entry.path, "licenses.db"))
            )
    except (OsppError, OSError):
        return []
    prefix = incomplete.lower()
    items = []
    for name in found:
        try:
            valid = machine_name(name) == name  # a name ospp would accept, safe for a shell
        except OsppError:
            valid = False
        if valid and name.startswith(prefix):
            items.append(CompletionItem(name))
    return items


def products(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The catalog's short product ids (ProPlus2021), described by their display names."""
    from click.shell_completion import CompletionItem

    from ospp.core.catalog import catalog

    prefix = incomplete.lower()
    return [
        CompletionItem(p.id, help=p.display_name)
        for p in catalog().products
        if p.id.lower().startswith(prefix)
    ]


def fixed(*values: tuple[str, str]) -> Completer:
    """A completer offering these ``(value, description)`` pairs, matched case-insensitively."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        prefix = incomplete.lower()
        return [
            CompletionItem(value, help=help_)
            for value, help_ in values
            if value.lower().startswith(prefix)
        ]

    return complete


def components_or_machines(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """``hardware change``: the hardware components, then the machine the change is made on."""
    from click.shell_completion import CompletionItem

    from ospp.protocol.tolerance import COMPONENTS, VOTES

    prefix = incomplete.lower()
    found = [
        CompletionItem(name, help=f"{VOTES[name]} vote{'s' if VOTES[name] > 1 else ''}")
        for name in COMPONENTS
        if name.startswith(prefix)
    ]
    return found + machines(ctx, param, incomplete)


def commands(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``help``: the commands of ospp, then those of the group named so far."""
    from click.shell_completion import CompletionItem

    current = ctx.find_root()
    command: click.Command = current.command
    for word in ctx.params.get(param.name or "") or ():
        name = word.lstrip("/").split(":")[0].lower()
        found = command.get_command(current, name) if isinstance(command, click.Group) else None
        if found is None:
            return []
        current = click.Context(found, info_name=name, parent=current)
        command = found
    if not isinstance(command, click.Group):
        return []
    lead = "/" if incomplete.startswith("/") else ""  # 'help /dst' offers /dstatus
    prefix = incomplete.lower().removeprefix("/")
    items = []
    for name in command.list_commands(current):
        sub = command.get_command(current, name)
        if sub is not None and not sub.hidden and name.startswith(prefix):
            items.append(CompletionItem(lead + name, help=sub.get_short_help_str(limit=200)))
    return items


def all_or_machines(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """slmgr's /dli and /dlv: ``all`` (every installed licence), or a machine."""
    from click.shell_completion import CompletionItem

    found = [CompletionItem("all", help="every installed licence")]
    return [i for i in found if i.value.startswith(incomplete.lower())] + machines(
        ctx, param, incomplete
    )
