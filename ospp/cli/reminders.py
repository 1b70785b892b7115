"""The words of the activation reminders and notices (``ospp.machine.reminders`` decides which
apply), translated. Printed by ``/dstatus`` (on stderr, after the ospp.vbs output, which stays
as it is) and by ``ospp service`` and ``ospp service --notify``."""

from __future__ import annotations

from collections.abc import Iterable

import click

from ospp.cli.i18n import Text, choose
from ospp.machine.reminders import KMS_NOTIFY, NOT_LICENSED, OUT_OF_TOLERANCE, PENDING, Notice


def describe(_: Text, n: Notice) -> str:
    if n.kind == PENDING and n.kms_client:
        return _(
            "{product}: not activated yet. You will be asked to activate it the next time an "
            "Office program opens ({days} days of grace left). To activate now: ospp /act",
            product=n.license_name,
            days=n.days_left,
        )
    if n.kind == PENDING:
        return _(
            "{product}: not activated yet. You will be asked to activate it the next time an "
            "Office program opens ({days} days of grace left). To activate now: ospp wizard",
            product=n.license_name,
            days=n.days_left,
        )
    if n.kind == KMS_NOTIFY:
        return _(
            "{product}: this copy of Office has not been activated by the Key Management "
            "Service (KMS): {days} days left to activate it. Ask your administrator about the "
            "KMS host.",
            product=n.license_name,
            days=n.days_left,
        )
    if n.kind == NOT_LICENSED:
        return _(
            "{product}: Unlicensed product. Office is not licensed, but all features are still "
            "available. Activate it to stop this notice.",
            product=n.license_name,
        )
    assert n.kind == OUT_OF_TOLERANCE
    return _(
        "{product}: the activation no longer holds; activate again within {days} days.",
        product=n.license_name,
        days=n.days_left,
    )


def lines(found: Iterable[Notice], lang: str | None = None) -> list[str]:
    _ = Text(choose(lang))
    return [describe(_, n) for n in found]


def echo_to_stderr(found: list[Notice]) -> None:
    """``/dstatus``'s reminder: stderr only, so the ospp.vbs output on stdout stays the same."""
    for line in lines(found):
        click.echo(line, err=True)
