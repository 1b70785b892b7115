"""``ospp wizard``: the activation wizard as a terminal dialogue (Internet or telephone).

The steps that touch the store or the authority are in :mod:`ospp.machine.wizard`; this module
asks and tells. Works on a terminal and with piped input; ``--json`` prints one JSON object at
the end (the dialogue then goes to stderr).
"""

from __future__ import annotations

import os
from typing import Any

import click

from ospp.cli.base import JSON_OPTION, Result, json_wanted, reports
from ospp.cli.dialogue import LANG_OPTION, Dialogue, printable
from ospp.cli.i18n import Text, choose
from ospp.core.errors import (
    E_INVALID_KEY,
    E_KEY_BLOCKED,
    E_KEY_NOT_AVAILABLE,
    E_MAK_LIMIT,
    E_MISMATCH,
    E_SERVER_BLOCKED,
    E_SERVER_INVALID_KEY,
    E_SKU_NOT_FOUND,
    E_UNLOCK_LIMIT,
    E_UNTRUSTED,
    Cancelled,
    ExitStatus,
    LicensingError,
    OsppError,
    hex_code,
)
from ospp.machine import activation, client
from ospp.machine import wizard as steps
from ospp.machine.store import MachineStore
from ospp.protocol.phone import cid_entry


def plain_words(_: Text, exc: OsppError) -> str:
    """What went wrong, in plain words, with the code."""
    code = hex_code(exc.code)
    if exc.code in (E_INVALID_KEY, E_SERVER_INVALID_KEY):
        return _("This product key is not valid ({code}).", code=code)
    if exc.code in (E_SERVER_BLOCKED, E_KEY_BLOCKED):
        return _("This product key has been blocked ({code}).", code=code)
    if exc.code in (E_MAK_LIMIT, E_UNLOCK_LIMIT):
        return _(
            "This product key has been used up: it has no activations left ({code}).", code=code
        )
    if exc.code == E_SKU_NOT_FOUND:
        return _("This product key is for a product that is not installed ({code}).", code=code)
    if exc.code == E_MISMATCH:
        return _("The confirmation ID does not match this installation ID ({code}).", code=code)
    return _(
        "Activation failed ({code}): {message}",
        code=code,
        message=printable(_.message(exc.message)),
    )


class Wizard:
    def __init__(self, store: MachineStore, d: Dialogue) -> None:
        self.store = store
        self.d = d
        self._ = d._
        self.data: dict[str, Any] = {"machine": store.name, "lang": d._.lang}
        self.recorded = False  # a failed Internet activation is in the history
        self.already = False  # the key typed is the one the product is activated with

    # -- the steps ------------------------------------------------------------------------

    def plan(self) -> steps.Plan:
        _, d = self._, self.d
        if not steps.products(self.store):
            raise LicensingError(
                E_SKU_NOT_FOUND,
                _("No Office product is installed on this machine."),
                _("Install one first, for example: ospp install-product ProPlus2021"),
            )
        found = steps.pending(self.store, os.environ)
        if found is not None:
            d.say(_("Product: {name}", name=found.licence.sku.license_name))
            return found
        done = steps.activated(self.store, os.environ)
        for lic in done:
            d.say(_("{name} is already activated.", name=lic.sku.license_name))
        while True:
            typed = d.ask(_("Type your product key (25 characters):"))
            try:
                plan = steps.plan_for_key(self.store, typed)
            except LicensingError as exc:
                d.say("  " + plain_words(_, exc) + " " + _("Check the key and type it again."))
                if exc.hint:
                    d.say("  " + printable(_.message(exc.hint)))
                continue
            d.say(_("Product: {name}", name=plan.licence.sku.license_name))
            # the key it is activated with already (by another command meanwhile, too):
            # installing it again would undo that
            done = steps.activated(self.store, os.environ)
            self.already = any(
                lic.sku.sku_id == plan.sku and lic.product_key == plan.new_key for lic in done
            )
            return plan

    def run(self) -> Result:
        _, d = self._, self.d
        d.say(_("Activation wizard"))
        d.say("=" * len(_("Activation wizard")))
        plan = self.plan()
        self.data.update(product_id=plan.licence.sku.product.id, sku_id=plan.sku)
        if self.already:
            d.say(_("It is activated with this key already: nothing was changed."))
            self.data.update(method=None, activated=True)
            return Result([], self.data, banners=False)
        d.say()
        d.say(_("How do you want to activate?"))
        d.say("  1. " + _("Activate via the Internet"))
        d.say("  2. " + _("Activate via telephone"))
        d.say("  3. " + _("Not now (you will be asked again)"))
        choice = d.choose(_("Choose 1, 2 or 3:"), 3)
        if choice == 3:
            steps.install_only(self.store, plan)
            d.say(_("The product is not activated. You will be asked again."))
            self.data.update(method=None, activated=False)
            return Result([], self.data, banners=False)
        if choice == 1:
            failure = self.internet(plan)
            if failure is None:
                return self.licensed("internet")
            if failure.code == E_KEY_NOT_AVAILABLE:  # another command changed the key meanwhile
                raise failure
            if failure.code == E_UNTRUSTED and not self.trusted():
                raise failure  # no authority is trusted: a telephone call would end the same
            self.data["internet_error"] = failure.to_json()
            if failure.code in steps.PHONE_WARNING_CODES:
                d.say(_("It is no longer possible to activate this product by telephone."))
                d.say(_("You may still call the activation centre: the agent can help you."))
            if not d.yes(_("Activate via telephone instead?")):
                d.say(
                    _(
                        "The product is not activated; nothing else was changed. The failed "
                        "activation is in the history: ospp /dhistoryacterr"
                    )
                    if self.recorded
                    else _("The product is not activated; nothing was changed.")
                )
                return Result([], {**self.data, "activated": False}, banners=False, failed=failure)
        self.phone(plan)
        return self.licensed("telephone")

    def trusted(self) -> bool:
        try:
            activation.check_trust(self.store, os.environ)
        except OsppError:
            return False
        return True

    def internet(self, plan: steps.Plan) -> OsppError | None:
        _, d = self._, self.d
        d.say(_("Contacting the activation server..."))
        try:
            steps.activate_online(self.store, plan, os.environ)
        except OsppError as exc:
            from ospp.machine.activation import kept_in_history

            self.recorded = kept_in_history(exc)
            d.say(plain_words(_, exc))
            return exc
        return None

    def phone(self, plan: steps.Plan) -> None:
        _, d = self._, self.d
        activation.check_trust(self.store, os.environ)  # said before the call, not after it
        centres = steps.centres()
        d.say()
        d.say(_("Step 1: choose your country or region."))
        for i, c in enumerate(centres, 1):
            d.say(f"  {i:>2}. {c.name(_.lang)}")
        centre = centres[d.choose(_("Country or region (number):"), len(centres)) - 1]
        d.say()
        d.say(_("Call the activation centre (simulated number, for rehearsal only):"))
        d.say("  " + _("Telephone: {number}", number=centre.phone))
        if centre.tty:
            d.say("  " + _("Text telephone (TTY): {number}", number=centre.tty))
        groups = steps.installation_id(self.store, plan).groups()
        d.say()
        d.say(_("Step 2: read this installation ID to the agent:"))
        for row in range(0, len(groups), 3):
            d.say("   " + "    ".join(f"{i + 1}: {groups[i]}" for i in range(row, row + 3)))
        d.say()
        d.say(_("Step 3: type the confirmation ID the agent reads to you."))
        self.data.update(centre=centre.code, installation_id="".join(groups))
        while True:
            cid = d.groups(cid_entry(), _("Confirmation ID"))
            try:
                steps.activate_by_phone(self.store, plan, cid, os.environ)
            except LicensingError as exc:
                d.say(plain_words(_, exc))
                if exc.code != E_MISMATCH or not d.yes(_("Type the confirmation ID again?")):
                    raise
                continue
            self.data["confirmation_id"] = cid.replace("-", "")
            return

    def licensed(self, method: str) -> Result:
        _ = self._
        self.d.say()
        self.d.say(_("Licensed product"))
        self.data.update(method=method, activated=True, status="LICENSED")
        return Result([], self.data, banners=False)


@click.command("wizard")
@click.argument("computer", required=False, metavar="[COMPUTERNAME]")
@LANG_OPTION
@JSON_OPTION
@reports
def wizard(computer: str | None, lang: str | None) -> Result:
    """Activate step by step, as Office's activation wizard does: by Internet or telephone."""
    ctx = click.get_current_context()
    as_json = json_wanted(ctx, bool(ctx.params.get("as_json")))
    text = Text(choose(lang))
    d = Dialogue(text, to_stderr=as_json)
    wiz: Wizard | None = None
    try:
        try:
            store = client.open_machine(computer)
            client.check_operation(store)  # a standard user is refused before any question
            wiz = Wizard(store, d)
            return wiz.run()
        except KeyboardInterrupt:
            raise d.cancelled(True, wiz is not None and wiz.recorded) from None
        except Cancelled as exc:
            interrupted = exc.exit_status == ExitStatus.INTERRUPTED
            raise d.cancelled(interrupted, wiz is not None and wiz.recorded) from None
    except OsppError as exc:
        return d.ending(exc)


COMMANDS = [wizard]
