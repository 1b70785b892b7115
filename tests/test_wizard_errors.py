"""Failures inside the wizard and the agent's console, in Swedish and English: what the lower
layers report (a bad key, a blocked key, an authority out of reach) is worded in the dialogue's
language, a failed Internet activation goes into /dhistoryacterr as /act puts it there, and the
ospp.vbs-format output of ordinary commands stays English."""

from __future__ import annotations

import time

import pytest

from tests.conftest import PRODUCT, Ospp
from tests.test_authority import issue
from tests.test_wizard import _dump, _env, _ready, _without_history, needs_pty

WORDS = {
    "en": {
        "key": r"Type your product key \(25 characters\):",
        "how": r"Choose 1, 2 or 3:",
        "short_key": (
            r"This product key is not valid \(0xC004F050\)\. Check the key and type it again\.\n"
            r"  Type the key as XXXXX-XXXXX-XXXXX-XXXXX-XXXXX\."
        ),
        "unreachable": (
            r"Activation failed \(0x80072EFD\): cannot reach the activation authority at "
            r"127\.0\.0\.1:9: "
        ),
        "blocked": r"This product key has been blocked \(0xC004C003\)\.",
        "phone_instead": r"Activate via telephone instead\? \[y/n\]",
        "no": "n",
        "declined": (
            r"The product is not activated; nothing else was changed\. The failed activation "
            r"is in the history: ospp /dhistoryacterr"
        ),
        "cancelled_recorded": (
            r"Cancelled\. The product is not activated; only the failed activation was "
            r"recorded \(ospp /dhistoryacterr\)\.\n---Processing-+\n-+\n"
            r"ERROR CODE: 0x800704C7\n"
            r"ERROR DESCRIPTION: The operation was canceled by the user\.\n"
            r"ERROR DETAIL: cancelled: interrupted \(Ctrl\+C\); only the failed activation was "
            r"recorded\n"
        ),
        "iid_prompt": r"Installation ID, group 1 of 9:",
        "refused": r"Refused \(0xC004C003\): the key ending {last5} has been blocked",
        "refused_block": (
            r"ERROR CODE: 0xC004C003\n"
            r"ERROR DESCRIPTION: The activation server determined the specified product key is "
            r"blocked\.\n"
            r"ERROR DETAIL: the key ending {last5} has been blocked\n"
            r"HINT: Ask for a new key\.\n"
        ),
        "phone_no_more": r"It is no longer possible to activate this product by telephone\.",
    },
    "sv": {
        "key": r"Skriv din produktnyckel \(25 tecken\):",
        "how": r"Välj 1, 2 eller 3:",
        "short_key": (
            r"Produktnyckeln är ogiltig \(0xC004F050\)\. Kontrollera nyckeln och skriv den "
            r"igen\.\n  Skriv nyckeln som XXXXX-XXXXX-XXXXX-XXXXX-XXXXX\."
        ),
        "unreachable": (
            r"Aktiveringen misslyckades \(0x80072EFD\): det går inte att nå aktiveringsservern "
            r"på 127\.0\.0\.1:9: "
        ),
        "blocked": r"Produktnyckeln har spärrats \(0xC004C003\)\.",
        "phone_instead": r"Aktivera via telefon i stället\? \[j/n\]",
        "no": "n",
        "declined": (
            r"Produkten är inte aktiverad; ingenting annat har ändrats\. Den misslyckade "
            r"aktiveringen finns i historiken: ospp /dhistoryacterr"
        ),
        "cancelled_recorded": (
            r"Avbrutet\. Produkten är inte aktiverad; bara den misslyckade aktiveringen har "
            r"registrerats \(ospp /dhistoryacterr\)\.\n---Bearbetar-+\n-+\n"
            r"FELKOD: 0x800704C7\n"
            r"FELBESKRIVNING: Åtgärden avbröts av användaren\.\n"
            r"FELDETALJER: avbrutet: avbröts med Ctrl\+C; bara den misslyckade aktiveringen har "
            r"registrerats\n"
        ),
        "iid_prompt": r"Installations-ID, grupp 1 av 9:",
        "refused": r"Nekad \(0xC004C003\): nyckeln som slutar på {last5} har spärrats",
        "refused_block": (
            r"FELKOD: 0xC004C003\n"
            r"FELBESKRIVNING: Aktiveringsservern har fastställt att den angivna produktnyckeln "
            r"är spärrad\.\n"
            r"FELDETALJER: nyckeln som slutar på {last5} har spärrats\n"
            r"TIPS: Be om en ny nyckel\.\n"
        ),
        "phone_no_more": r"Det går inte längre att aktivera den här produkten via telefon\.",
    },
}


def _history(ospp: Ospp) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = ospp("/dhistoryacterr", "--json").data()["entries"]
    return entries


@needs_pty
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_a_bad_key_and_an_authority_out_of_reach_in_the_dialogues_language(
    ospp: Ospp, lang: str
) -> None:
    from tests.ptyutil import Terminal

    w = WORDS[lang]
    key = _ready(ospp)
    pub = ospp.home / "authority.pub.json"
    pub.write_text(ospp("center", "pubkey").out)
    assert ospp("trust", "add", str(pub)).code == 0
    before = _dump(ospp)
    env = {**_env(ospp, lang), "OSPP_AUTHORITY": "127.0.0.1:9"}  # nothing listens there
    caller = Terminal(["wizard"], env)
    try:
        caller.expect(w["key"])
        caller.type(key[:11])  # the key parser's hint, translated
        caller.expect(w["short_key"])
        caller.expect(w["key"])
        caller.type(key)
        caller.expect(w["how"])
        caller.type("1")
        caller.expect(w["unreachable"])  # the network layer's words, translated
        caller.expect(w["phone_instead"])
        caller.type(w["no"])
        caller.expect(w["declined"])
        assert caller.wait() == 4  # a server could not be reached
    finally:
        caller.close()
    assert _without_history(_dump(ospp)) == _without_history(before)  # the key not installed
    # written as /act writes it: the code and the English detail that /dhistoryacterr prints
    [entry] = _history(ospp)
    assert entry["code"] == "0x80072EFD"
    assert str(entry["detail"]).startswith("cannot reach the activation authority at 127.0.0.1:9")
    text = ospp("/dhistoryacterr").out
    assert "MESSAGE: License acquisition failure details. hr=0x80072EFD" in text
    # an ordinary command's failure is recorded the same way
    ospp("/inpkey:" + key)
    assert ospp("/act", env={"OSPP_AUTHORITY": "127.0.0.1:9"}).code == 4
    assert [e["code"] for e in _history(ospp)] == ["0x80072EFD", "0x80072EFD"]


@needs_pty
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_ctrl_c_after_a_blocked_key_says_what_was_recorded(ospp: Ospp, lang: str) -> None:
    from tests.ptyutil import Terminal

    w = WORDS[lang]
    _ready(ospp)
    key = issue(ospp, limit=1)
    ospp("center", "block", key)
    before = _dump(ospp)
    caller = Terminal(["wizard"], _env(ospp, lang))
    try:
        caller.expect(w["key"])
        caller.type(key)
        caller.expect(w["how"])
        caller.type("1")
        caller.expect(w["blocked"])
        caller.expect(w["phone_no_more"])
        caller.expect(w["phone_instead"])
        caller.ctrl_c()
        caller.expect(w["cancelled_recorded"])
        assert caller.wait() == 130
    finally:
        caller.close()
    assert _without_history(_dump(ospp)) == _without_history(before)
    [entry] = _history(ospp)
    assert entry["code"] == "0xC004C003"
    assert entry["detail"] == f"the key ending {key[-5:]} has been blocked"  # English, stored


@needs_pty
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_the_agents_console_words_a_refusal_in_its_language(ospp: Ospp, lang: str) -> None:
    from tests.ptyutil import Terminal

    w = WORDS[lang]
    _ready(ospp)
    key = issue(ospp, limit=1)
    ospp("/inpkey:" + key)
    iid = ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    ospp("center", "block", key)
    agent = Terminal(["center", "phone"], _env(ospp, lang))
    try:
        agent.expect(w["iid_prompt"])
        agent.type(iid)  # read out in one go
        agent.expect(w["phone_no_more"])
        agent.expect(w["refused"].format(last5=key[-5:]))
        agent.expect(w["refused_block"].format(last5=key[-5:]))
        assert agent.wait() == 1
    finally:
        agent.close()
    assert '"outcome": "refused"' in (ospp.home / "center" / "phone-calls.jsonl").read_text()
    if lang == "sv":
        assert "ERROR" not in agent.seen and "blocked" not in agent.seen


def test_ordinary_commands_keep_their_english_error_block_whatever_the_language(
    ospp: Ospp,
) -> None:
    ospp("install-product", PRODUCT)
    runs = [
        ospp.proc("/inpkey:DHYBD-D2BBQ", env={"LANG": lang, "LC_ALL": lang})
        for lang in ("en_US.UTF-8", "sv_SE.UTF-8")
    ]
    assert runs[0].out == runs[1].out and runs[0].code == runs[1].code == 1
    assert "HINT: Type the key as XXXXX-XXXXX-XXXXX-XXXXX-XXXXX." in runs[1].out
    assert "ERROR DETAIL: invalid product key: it has 10 characters" in runs[1].out


@pytest.mark.parametrize(
    ("lang", "detail", "hint"),
    [
        (
            "en",
            "ERROR DETAIL: the licence store {path} cannot be read: file is not a database",
            "HINT: The file was left exactly as it is.",
        ),
        (
            "sv",
            "FELDETALJER: licensarkivet {path} kan inte läsas: file is not a database",
            "TIPS: Filen lämnades precis som den är.",
        ),
    ],
)
def test_a_damaged_store_is_reported_in_the_dialogues_language_and_left_alone(
    ospp: Ospp, lang: str, detail: str, hint: str
) -> None:
    ospp("install-product", PRODUCT)
    store = ospp.store_file()
    garbage = bytes(range(256)) * 16
    store.write_bytes(garbage)
    for extra in ("-wal", "-shm"):
        store.with_name(store.name + extra).unlink(missing_ok=True)
    ran = ospp.proc("wizard", "--lang", lang, input="")
    assert ran.code == 3
    assert detail.format(path=store) in ran.out and hint in ran.out
    assert store.read_bytes() == garbage


@needs_pty
@pytest.mark.parametrize(
    ("lang", "readback", "said"),
    [
        (
            "en",
            r"Group 1 of 20: \d{6}",
            r"Call ended early\. The confirmation ID was issued and logged: \d{120}\n(?:.*\n){2}"
            r"ERROR CODE: 0x800704C7\n.*\n"
            r"ERROR DETAIL: cancelled: interrupted \(Ctrl\+C\); the confirmation ID was issued "
            r"and logged\n",
        ),
        (
            "sv",
            r"Grupp 1 av 20: \d{6}",
            r"Samtalet avbröts\. Bekräftelse-ID:t har utfärdats och loggats: \d{120}\n(?:.*\n){2}"
            r"FELKOD: 0x800704C7\n.*\n"
            r"FELDETALJER: avbrutet: avbröts med Ctrl\+C; bekräftelse-ID:t har utfärdats och "
            r"loggats\n",
        ),
    ],
)
def test_ctrl_c_while_the_agent_reads_back_says_the_id_was_issued(
    ospp: Ospp, lang: str, readback: str, said: str
) -> None:
    from tests.ptyutil import Terminal

    key = _ready(ospp)
    ospp("/inpkey:" + key)
    iid = ospp("dinstid", "--json").data()["products"][0]["installation_id"]
    agent = Terminal(["center", "phone"], _env(ospp, lang))
    try:
        agent.expect(WORDS[lang]["iid_prompt"])
        agent.type(iid)
        agent.expect(readback)
        time.sleep(0.3)  # as a person would: the console is reading the key press by then
        agent.ctrl_c()
        agent.expect(said)
        assert agent.wait() == 130
    finally:
        agent.close()
    assert '"outcome": "confirmed"' in (ospp.home / "center" / "phone-calls.jsonl").read_text()


def test_a_bad_computer_name_or_time_is_worded_in_the_dialogues_language(ospp: Ospp) -> None:
    """The wizard's closing block said FELDETALJER and TIPS in English for these."""
    for args, env in (
        (("wizard", "Kontor-Ö1"), {}),
        (("wizard", "CON"), {}),
        (("center", "phone"), {"OSPP_NOW": "2027-13-01"}),
        (("wizard",), {"OSPP_NOW": "0001-01-01T00:00:00+01:00"}),
    ):
        ran = ospp.proc(*args, "--lang", "sv", env=env, input="")
        assert ran.code == 2, (args, ran.out, ran.err)
        detail = next(line for line in ran.out.splitlines() if line.startswith("FELDETALJER: "))
        hint = next(line for line in ran.out.splitlines() if line.startswith("TIPS: "))
        for english in (" is not ", " is outside ", "Use ", "Choose "):
            assert english not in detail + hint, (args, detail, hint)
        # the JSON error stays English, for scripts
        assert " is " in ospp.proc(*args, "--json", env=env, input="").json()["error"]["message"]
