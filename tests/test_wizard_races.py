"""The store changes while the wizard waits at a prompt: another ospp process installs a key or
activates. What the wizard stores at the end must still belong to the key the store holds, and
what another command stored meanwhile is not overwritten unseen."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import Ospp
from tests.test_authority import issue
from tests.test_wizard import _dump, _env, _ready, _without_history, needs_pty

if TYPE_CHECKING:
    from tests.ptyutil import Terminal


def _cid_for(ospp: Ospp) -> str:
    iid = ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    return str(ospp("center", "confirm", iid, "--json").data()["cid"])


def _to_the_cid(caller: Terminal) -> None:
    """At 'How do you want to activate?': by telephone, the first country, up to the prompt
    for the confirmation ID's first group."""
    caller.type("2")
    caller.expect(r"Country or region \(number\):")
    caller.type("1")
    caller.expect(r"Confirmation ID, group 1 of 20:")


@needs_pty
def test_a_key_installed_while_the_wizard_waits_for_the_cid_is_not_given_its_activation(
    ospp: Ospp,
) -> None:
    """The wizard used to store the confirmation ID's activation beside the key installed
    meanwhile, say 'Licensed product' and exit 0, while /dstatus showed 0xC004E003."""
    from tests.ptyutil import Terminal

    key = _ready(ospp)
    assert ospp("/inpkey:" + key).code == 0  # installed: the wizard asks for no key
    cid = _cid_for(ospp)
    other = issue(ospp, limit=5)
    caller = Terminal(["wizard"], _env(ospp, "en"))
    try:
        caller.expect(r"Choose 1, 2 or 3:")
        _to_the_cid(caller)
        assert ospp.proc("/inpkey:" + other).code == 0  # another admin, another shell
        before = _dump(ospp)
        caller.type(cid)
        caller.expect(r"0xC004F014")
        status = caller.wait()
    finally:
        caller.close()
    assert status == 1, caller.seen
    assert "Licensed product" not in caller.seen
    assert _without_history(_dump(ospp)) == _without_history(before)
    product = ospp("/dstatus", "--json").data()["products"][0]
    assert product["status"] == "OOB_GRACE" and product["error_code"] == "0x4004F00C", product
    assert product["key_last5"] == other[-5:]


@pytest.mark.parametrize("choice", ["1", "2", "3"])
@needs_pty
def test_a_key_typed_into_the_wizard_does_not_replace_one_activated_meanwhile(
    ospp: Ospp, choice: str
) -> None:
    """Another admin installs and activates a MAK while the wizard, given another key, waits:
    the wizard's key used to replace it (and its activation) without a word."""
    from tests.ptyutil import Terminal

    key = _ready(ospp)
    other = issue(ospp, limit=5)
    caller = Terminal(["wizard"], _env(ospp, "en"))
    try:
        caller.expect(r"Type your product key \(25 characters\):")
        caller.type(key)
        caller.expect(r"Choose 1, 2 or 3:")
        assert ospp.proc("/inpkey:" + other, "--act").code == 0
        before = _dump(ospp)
        if choice == "2":
            cid_for_key = _cid_for_typed(ospp, key)
            _to_the_cid(caller)
            caller.type(cid_for_key)
        else:  # Internet (nothing else is offered: a telephone call would end the same), not now
            caller.type(choice)
        caller.expect(r"0xC004F014")
        status = caller.wait()
    finally:
        caller.close()
    assert status == 1, caller.seen
    assert "Activate via telephone instead?" not in caller.seen
    if choice == "1":  # the change is seen before the authority is asked: nothing is spent
        assert _dump(ospp) == before
        [typed] = [
            k for k in ospp("center", "keys", "--json").data()["keys"] if k["key_last5"] == key[-5:]
        ]
        assert typed["used"] == 0, typed
    assert _without_history(_dump(ospp)) == _without_history(before)
    product = ospp("/dstatus", "--json").data()["products"][0]
    assert product["status"] == "LICENSED" and product["key_last5"] == other[-5:]


def _cid_for_typed(ospp: Ospp, key: str) -> str:
    """The CID for ``key`` on this machine, as the wizard would show its IID (the key is not
    installed: a copy of the home is used to read the IID)."""
    import shutil

    copy = Ospp(ospp.home.parent / (ospp.home.name + "-copy"))
    shutil.copytree(ospp.home / "client", copy.home / "client")
    copy.env["OSPP_CENTER_HOME"] = ospp.env["OSPP_CENTER_HOME"]
    assert copy("/inpkey:" + key).code == 0
    return _cid_for(copy)


def test_an_empty_trust_store_is_said_before_the_call_not_after_the_cid_is_typed(
    ospp: Ospp,
) -> None:
    """Without a trusted authority a confirmation ID cannot be checked: the wizard used to show
    the installation ID, let the call be made and all 20 groups be typed, and only then say
    so, the typed confirmation ID gone with the error."""
    key = _ready(ospp)
    assert ospp("/inpkey:" + key).code == 0
    elsewhere = {"OSPP_CENTER_HOME": str(ospp.home / "no-authority-here")}
    ran = ospp.proc("wizard", "--json", input="2\n1\n", env=elsewhere)
    assert ran.code == 1 and ran.json()["error"]["code"] == "0xC004E003", (ran.out, ran.err)
    assert "Step 1" not in ran.err and "ospp trust add" in ran.json()["error"]["hint"]
    typed = ospp.proc("actcid", "--interactive", "--json", input="", env=elsewhere)
    assert typed.code == 1 and typed.json()["error"]["code"] == "0xC004E003", typed.out
    assert "Group 1 of 20" not in typed.err


@needs_pty
def test_the_key_activated_meanwhile_typed_into_the_wizard_changes_nothing(ospp: Ospp) -> None:
    """Another admin installs and activates the very key the wizard is then given: 'Not now'
    used to install it anew, which undid that activation."""
    from tests.ptyutil import Terminal

    key = _ready(ospp)
    caller = Terminal(["wizard"], _env(ospp, "en"))
    try:
        caller.expect(r"Type your product key \(25 characters\):")
        assert ospp.proc("/inpkey:" + key, "--act").code == 0
        before = _dump(ospp)
        caller.type(key)
        caller.expect(r"It is activated with this key already: nothing was changed\.")
        status = caller.wait()
    finally:
        caller.close()
    assert status == 0, caller.seen
    assert "How do you want to activate?" not in caller.seen
    assert _dump(ospp) == before


def test_no_telephone_is_offered_when_no_authority_is_trusted(ospp: Ospp) -> None:
    """Internet activation fails with 0xC004E003 when no authority is trusted; a telephone
    call would fail the same way at once, so the wizard ends there instead of offering it."""
    key = _ready(ospp)
    assert ospp("/inpkey:" + key).code == 0
    elsewhere = {"OSPP_CENTER_HOME": str(ospp.home / "no-authority-here")}
    ran = ospp.proc("wizard", "--json", input="1\ny\n", env=elsewhere)
    assert ran.code == 1 and ran.json()["error"]["code"] == "0xC004E003", (ran.out, ran.err)
    assert "Activate via telephone instead?" not in ran.err, ran.err
