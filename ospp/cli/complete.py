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
