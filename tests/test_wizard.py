"""The activation wizard and the agent's console, driven as people would: in two pseudo-
terminals (the whole phone call, a wrong group, a paste, Ctrl+C) and with piped input."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys

import pytest

from ospp.protocol.digit_groups import damm
from tests.conftest import PRODUCT, Ospp
from tests.test_authority import issue

needs_pty = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

WORDS = {
    "en": {
        "key": r"Type your product key \(25 characters\):",
        "how": r"Choose 1, 2 or 3:",
        "country": r"Country or region \(number\):",
        "iid_done": r"Step 3: type the confirmation ID",
        "cid_prompt": r"Confirmation ID, group {n} of 20:",
        "iid_prompt": r"Installation ID, group {n} of 9:",
        "wrong": r"Group {n} is wrong \(0xC004F04D\): its check digit does not match",
        "readback": r"Group {n} of 20: (\d{{6}})",
        "call_done": r"Call complete",
        "licensed": r"\nLicensed product",
        "cancelled": r"Cancelled\. Nothing was changed\.",
        "phone_no_more": "It is no longer possible to activate this product by telephone.",
        "ctrl_c_block": (
            r"---Processing-{26}\n-{39}\nERROR CODE: 0x800704C7\n"
            r"ERROR DESCRIPTION: The operation was canceled by the user\.\n"
            r"ERROR DETAIL: cancelled: interrupted \(Ctrl\+C\); nothing was changed\n"
            r"-{39}\n---Exiting-{29}"
        ),
    },
    "sv": {
        "key": r"Skriv din produktnyckel \(25 tecken\):",
        "how": r"Välj 1, 2 eller 3:",
        "country": r"Land eller region \(nummer\):",
        "iid_done": r"Steg 3: skriv in bekräftelse-ID:t",
        "cid_prompt": r"Bekräftelse-ID, grupp {n} av 20:",
        "iid_prompt": r"Installations-ID, grupp {n} av 9:",
        "wrong": r"Grupp {n} är fel \(0xC004F04D\): kontrollsiffran stämmer inte",
        "readback": r"Grupp {n} av 20: (\d{{6}})",
        "call_done": r"Samtalet är klart",
        "licensed": r"\nLicensierad produkt",
        "cancelled": r"Avbrutet\. Ingenting har ändrats\.",
        "phone_no_more": "Det går inte längre att aktivera den här produkten via telefon.",
        "ctrl_c_block": (
            r"---Bearbetar-{27}\n-{39}\nFELKOD: 0x800704C7\n"
            r"FELBESKRIVNING: Åtgärden avbröts av användaren\.\n"
            r"FELDETALJER: avbrutet: avbröts med Ctrl\+C; ingenting har ändrats\n"
            r"-{39}\n---Avslutar-{28}"
        ),
    },
}
LOCALES = {"en": "en_US.UTF-8", "sv": "sv_SE.UTF-8"}


def _dump(ospp: Ospp, machine: str = "localhost") -> list[str]:
    with sqlite3.connect(ospp.store_file(machine)) as conn:
        return list(conn.iterdump())


def _without_history(dump: list[str]) -> list[str]:
    history = re.compile(r'INSERT INTO "(history|sqlite_sequence)"')
    return [line for line in dump if not history.match(line)]


def _ready(ospp: Ospp, machine: str = "localhost") -> str:
    """A machine with the product installed (no MAK yet) and a MAK issued for it."""
    ospp("install-product", PRODUCT, machine)
    assert ospp("/dstatus", machine).code == 0
    return issue(ospp, limit=5)


def _wrong(group: str) -> str:
    return group[:-1] + str((int(group[-1]) + 1) % 10)


def _env(ospp: Ospp, lang: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    return {**env, **ospp.env, "LANG": LOCALES[lang], "TERM": "dumb"}


# -- two people, two terminals ---------------------------------------------------------------


@needs_pty
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_a_whole_phone_call_in_two_terminals(ospp: Ospp, lang: str) -> None:
    from tests.ptyutil import Terminal

    w = WORDS[lang]
    key = _ready(ospp)
    caller = Terminal(["wizard"], _env(ospp, lang))
    agent = Terminal(["center", "phone"], _env(ospp, lang))
    try:
        caller.expect(w["key"])
        caller.type(key)
        caller.expect(w["how"])
        caller.type("2")
        caller.expect(w["country"])
        caller.type("1")
        shown = caller.expect(rf"((?:.|\n)*?){w['iid_done']}")[1]
        iid = [g for _, g in sorted(re.findall(r"(\d): (\d{7})", shown))]
        assert len(iid) == 9 and "555" in shown  # the simulated centre's number

        # the agent hears group 1 wrong, then right; the caller reads the rest one by one
        agent.expect(w["iid_prompt"].format(n=1))
        agent.type(_wrong(iid[0]))
        agent.expect(w["wrong"].format(n=1))
        for n, group in enumerate(iid, 1):
            agent.expect(w["iid_prompt"].format(n=n))
            agent.type(group)
        cid = []
        for n in range(1, 21):
            cid.append(agent.expect(w["readback"].format(n=n))[1])
            agent.type("")
        agent.expect(w["call_done"])
        assert agent.wait() == 0

        # the caller types what the agent reads: group 2 wrong first, then the rest
        caller.expect(w["cid_prompt"].format(n=1))
        caller.type(cid[0])
        caller.expect(w["cid_prompt"].format(n=2))
        caller.type(_wrong(cid[1]))
        caller.expect(w["wrong"].format(n=2))
        for n in range(2, 21):
            caller.expect(w["cid_prompt"].format(n=n))
            caller.type(cid[n - 1])
        caller.expect(w["licensed"])
        assert caller.wait() == 0
    finally:
        caller.close()
        agent.close()
    status = ospp("/dstatus", "--json").data()["products"]
    assert [p["status"] for p in status if p["channel"] == "mak"] == ["LICENSED"]
    log = (ospp.home / "center" / "phone-calls.jsonl").read_text().splitlines()
    assert len(log) == 1
    call = json.loads(log[0])
    assert call["outcome"] == "confirmed" and call["installation_id"] == "".join(iid)
    assert call["confirmation_id"] == "".join(cid)


@needs_pty
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_a_pasted_confirmation_id_activates(ospp: Ospp, lang: str) -> None:
    from tests.ptyutil import Terminal

    w = WORDS[lang]
    key = _ready(ospp)
    ospp("/inpkey:" + key)  # installed already: the wizard does not ask for a key
    iid = ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    cid = ospp("center", "confirm", iid, "--json").data()["cid"]
    caller = Terminal(["wizard", "--lang", lang], _env(ospp, "en"))
    try:
        caller.expect(w["how"])
        caller.type("2")
        caller.expect(w["country"])
        caller.type("2")
        caller.expect(w["cid_prompt"].format(n=1))
        caller.type(" ".join(cid[i : i + 6] for i in range(0, 120, 6)))
        caller.expect(w["licensed"])
        assert caller.wait() == 0
    finally:
        caller.close()
    assert w["key"].replace("\\", "") not in caller.seen


@needs_pty
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_ctrl_c_midway_leaves_the_store_unchanged(ospp: Ospp, lang: str) -> None:
    from tests.ptyutil import Terminal

    w = WORDS[lang]
    key = _ready(ospp)
    before = _dump(ospp)
    caller = Terminal(["wizard"], _env(ospp, lang))
    try:
        caller.expect(w["key"])
        caller.type(key)
        caller.expect(w["how"])
        caller.type("2")
        caller.expect(w["country"])
        caller.type("1")
        for n in range(1, 4):  # three good-looking groups, then Ctrl+C
            caller.expect(w["cid_prompt"].format(n=n))
            data = f"{n:05d}"
            caller.type(data + str(damm(data)))
        caller.expect(w["cid_prompt"].format(n=4))
        caller.ctrl_c()
        caller.expect(w["cancelled"])
        caller.expect(w["ctrl_c_block"])  # the closing error block, in the dialogue's language
        assert caller.wait() == 130
    finally:
        caller.close()
    assert _dump(ospp) == before  # not even the typed key was installed
    if lang == "sv":
        assert "ERROR" not in caller.seen and "cancelled" not in caller.seen


@needs_pty
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_ctrl_c_at_the_agents_console_logs_nothing(ospp: Ospp, lang: str) -> None:
    from tests.ptyutil import Terminal

    w = WORDS[lang]
    assert ospp("center", "init").code == 0
    agent = Terminal(["center", "phone"], _env(ospp, lang))
    try:
        agent.expect(w["iid_prompt"].format(n=1))
        agent.type("123456" + str(damm("123456")))
        agent.expect(w["iid_prompt"].format(n=2))
        agent.ctrl_c()
        agent.expect(w["cancelled"])
        agent.expect(w["ctrl_c_block"])
        assert agent.wait() == 130
    finally:
        agent.close()
    assert not (ospp.home / "center" / "phone-calls.jsonl").exists()


# -- piped input, as training scripts drive it -------------------------------------------------


def test_piped_phone_activation_ends_with_one_json_object(ospp: Ospp) -> None:
    key = _ready(ospp)
    first = ospp.proc("wizard", "--json", input=f"{key}\n2\n1\n")  # read the IID, then stop
    assert first.code == 1 and first.json()["error"]["code"] == "0x800704C7"
    iid = "".join(g for _, g in sorted(re.findall(r"(\d): (\d{7})", first.err)))
    cid = ospp("center", "confirm", iid, "--json").data()["cid"]
    ran = ospp.proc("wizard", "--json", input=f"not-a-key\n{key}\n2\n6\n{cid}\n")
    assert ran.code == 0, ran.err
    data = ran.data()  # stdout is exactly one JSON object; the dialogue went to stderr
    assert ran.json()["ok"] and data["activated"] and data["method"] == "telephone"
    assert data["installation_id"] == iid and data["centre"] == "US"
    assert "This product key is not valid (0xC004F050)." in ran.err
    assert "Licensed product" in ran.err


def test_piped_internet_activation(ospp: Ospp) -> None:
    key = _ready(ospp)
    ran = ospp.proc("wizard", "--json", "--lang", "sv", input=f"{key}\n1\n")
    assert ran.code == 0, ran.err
    assert ran.data()["method"] == "internet" and "Licensierad produkt" in ran.err


@pytest.mark.parametrize(
    ("spoil", "code", "words"),
    [
        ("block", "0xC004C003", "This product key has been blocked (0xC004C003)."),
        ("use-up", "0xC004C020", "it has no activations left (0xC004C020)."),
    ],
)
def test_blocked_or_used_up_key_warns_about_the_phone_and_may_go_on(
    ospp: Ospp, spoil: str, code: str, words: str
) -> None:
    _ready(ospp)
    key = issue(ospp, limit=1)
    if spoil == "block":
        ospp("center", "block", key)
    else:
        ospp("install-product", PRODUCT, "other")
        assert ospp("/inpkey:" + key, "--act", "other").code == 0
    before = _dump(ospp)
    ran = ospp.proc("wizard", "--json", input=f"{key}\n1\nn\n")
    assert ran.code == 1
    assert ran.json()["error"]["code"] == code
    assert words in ran.err
    assert "It is no longer possible to activate this product by telephone." in ran.err
    # the key was not installed; only the failed attempt went into the history, as with /act
    assert _without_history(_dump(ospp)) == _without_history(before)
    history = ospp("/dhistoryacterr", "--json").data()["entries"]
    assert [e["code"] for e in history] == [code]
    # the person may go on by telephone anyway, as the article advises
    going_on = ospp.proc("wizard", "--json", input=f"{key}\n1\ny\n1\n")
    assert "Step 2: read this installation ID to the agent:" in going_on.err


def test_not_now_installs_the_key_and_the_reminder_follows(ospp: Ospp) -> None:
    key = _ready(ospp)
    ran = ospp.proc("wizard", input=f"{key}\n3\n")
    assert ran.code == 0 and "You will be asked again." in ran.out
    status = ospp.proc("/dstatus")
    assert "LICENSE STATUS:  ---OOB_GRACE---" in status.out
    assert "To activate now: ospp wizard" in status.err
    assert ospp("/dstatus", "--json").data()["reminders"][0]["kind"] == "pending"


def test_not_now_in_json_has_no_method_and_matches_the_schema(ospp: Ospp) -> None:
    key = _ready(ospp)
    ran = ospp.proc("wizard", "--json", input=f"{key}\n3\n")  # checked against docs/schema
    assert ran.code == 0, (ran.out, ran.err)
    assert ran.data()["method"] is None and ran.data()["activated"] is False


def test_no_product_installed_says_how(ospp: Ospp) -> None:
    ran = ospp.proc("wizard", "--json", input="")
    assert ran.code == 1
    error = ran.json()["error"]
    assert "No Office product is installed" in error["message"]
    assert "ospp install-product" in error["hint"]


def test_a_servers_message_reaches_the_terminal_escaped() -> None:
    from ospp.cli.i18n import Text
    from ospp.cli.wizard import plain_words
    from ospp.core.errors import LicensingError

    said = plain_words(Text("en"), LicensingError(0xC004F074, "refused: \x1b[2Jgone\r"))
    assert "\x1b" not in said and "\r" not in said and "\\x1b[2Jgone\\x0d" in said


def test_a_standard_user_is_refused_as_by_act_unless_the_machine_allows_it(ospp: Ospp) -> None:
    key = _ready(ospp)
    before = _dump(ospp)
    alice = {"OSPP_USER": "alice"}
    ran = ospp.proc("wizard", "--json", input=f"{key}\n1\n", env=alice)
    assert ran.code == 1 and ran.json()["error"]["code"] == "0xC004F025"
    assert _dump(ospp) == before
    assert ospp("center", "keys", "--json").data()["keys"][0]["used"] == 0
    assert ospp("/puserops").code == 0
    allowed = ospp.proc("wizard", "--json", input=f"{key}\n1\n", env=alice)
    assert allowed.code == 0, allowed.err


def test_the_key_a_product_is_activated_with_changes_nothing(ospp: Ospp) -> None:
    """Typed again into the wizard, the MAK the product is activated with used to be
    installed anew, which undoes the activation ('Not now' then left it in grace)."""
    key = _ready(ospp)
    assert ospp("/inpkey:" + key, "--act").code == 0
    before = ospp("/dstatus", "--json").data()["products"][0]
    assert before["status"] == "LICENSED"
    ran = ospp.proc("wizard", "--json", input=f"{key}\n3\n")  # checked against docs/schema
    assert ran.code == 0, (ran.out, ran.err)
    assert "It is activated with this key already: nothing was changed." in ran.err
    assert "How do you want to activate?" not in ran.err
    assert ran.data()["activated"] is True and ran.data()["method"] is None
    after = ospp("/dstatus", "--json").data()["products"][0]
    assert after["status"] == "LICENSED"
    assert after["activated_at"] == before["activated_at"]
