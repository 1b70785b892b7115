"""``ospp center phone``: the activation centre agent's console for one phone call.

The agent types the caller's installation ID group by group as it is read out; each group's
check digit is checked at once, so a misheard group is asked for again right away. The console
then gets the confirmation ID from the authority and shows it group by group for reading back
(Enter after each group), and logs the call.
"""

from __future__ import annotations

from pathlib import Path

import click

from ospp.cli.base import JSON_OPTION, Result, json_wanted, reports
from ospp.cli.dialogue import LANG_OPTION, Dialogue, printable
from ospp.cli.i18n import Text, choose
from ospp.core.clock import clock_from_env, iso
from ospp.core.errors import N_, Cancelled, ExitStatus, LicensingError, OsppError, hex_code
from ospp.core.paths import center_home
from ospp.machine.wizard import PHONE_WARNING_CODES
from ospp.protocol.phone import CID_GROUP_DATA, iid_entry


@click.command("phone")
@LANG_OPTION
@JSON_OPTION
@reports
def phone(lang: str | None) -> Result:
    """The agent's console: take a caller's installation ID, read back the confirmation ID."""
    ctx = click.get_current_context()
    _ = Text(choose(lang))
    d = Dialogue(_, to_stderr=json_wanted(ctx, bool(ctx.params.get("as_json"))))
    try:
        return _call(_, d)
    except OsppError as exc:
        return d.ending(exc)


def _call(_: Text, d: Dialogue) -> Result:
    from ospp.authority import calllog
    from ospp.authority.state import Authority

    home = Path(center_home())
    clock = clock_from_env()
    cid = ""
    log: calllog.CallLog | None = None
    unlogged: OsppError | None = None  # the call confirmed, but its line not written
    try:
        d.say(_("Activation centre: telephone activation"))
        d.say(_("Ask the caller to read the installation ID shown in the wizard, group by group."))
        Authority.require_here(home)  # no authority here: said before anything is read
        calllog.CallLog(home)  # nor a log that cannot be written
        iid = d.groups(iid_entry(), _("Installation ID"))
        authority = Authority.existing(home, clock)  # none is made: it would know no key
        entry = {"at": iso(clock.now()), "installation_id": iid.replace("-", "")}
        log = calllog.CallLog(home)
        log.open()  # before confirming: a log that cannot be written confirms nothing
        try:
            cid = authority.confirm(iid)
        except LicensingError as exc:
            if exc.code in PHONE_WARNING_CODES:
                d.say(_("It is no longer possible to activate this product by telephone."))
            d.say(
                _(
                    "Refused ({code}): {message}",
                    code=hex_code(exc.code),
                    message=printable(_.message(exc.message)),
                )
            )
            log.append({**entry, "outcome": "refused", "code": hex_code(exc.code)})
            raise
        try:
            log.append({**entry, "outcome": "confirmed", "confirmation_id": cid})
        except OsppError as exc:  # confirmed (an activation used): the caller still gets it
            unlogged = exc
            d.say(
                _(
                    "The call could not be logged ({message}); read the confirmation ID to "
                    "the caller all the same.",
                    message=printable(_.message(exc.message)),
                )
            )
        size = CID_GROUP_DATA + 1
        groups = [cid[i : i + size] for i in range(0, len(cid), size)]
        d.say()
        d.say(_("Read the confirmation ID to the caller, one group at a time."))
        d.say(_("Press Enter after each group."))
        for n, group in enumerate(groups, 1):
            prompt = _(
                "Group {n} of {total}: {group}",
                n=n,
                total=len(groups),
                group=group,
            )
            try:
                d.ask(f"  {prompt}")
            except Cancelled:
                d.say("  " + " ".join(groups[n:]))  # input ended: show the rest at once
                break
        d.say()
        d.say(_("Call complete. Ask the caller to check that the wizard says 'Licensed product'."))
    except (KeyboardInterrupt, Cancelled) as exc:
        interrupted = not isinstance(exc, Cancelled) or exc.exit_status == ExitStatus.INTERRUPTED
        if not cid:
            raise d.cancelled(interrupted) from None
        d.say()
        if unlogged is not None:
            d.say(_("Call ended early. The confirmation ID was issued, not logged: {cid}", cid=cid))
            raise Cancelled(interrupted, N_("the confirmation ID was issued, not logged")) from None
        d.say(_("Call ended early. The confirmation ID was issued and logged: {cid}", cid=cid))
        raise Cancelled(interrupted, N_("the confirmation ID was issued and logged")) from None
    finally:
        if log is not None:
            log.close()
    return Result(
        [],
        {
            "installation_id": entry["installation_id"],
            "confirmation_id": cid,
            "call_log": str(calllog.log_path(home)),
        },
        banners=False,
        error=unlogged,  # exit 3 once the caller has the ID: the call is not in the log
    )
