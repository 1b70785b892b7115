"""What peers and clients send reaches a terminal only with its control characters escaped."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ospp.core.endpoint import Endpoint
from ospp.core.printable import printable
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import Host, make_host, raw_request
from tests.test_kms import RogueHost

# One of each kind of trouble a terminal can be sent.
HOSTILE = {
    "csi": "\x1b[2J\x1b[1;1H\x1b[31m",  # clear screen, move cursor, colour
    "osc": "\x1b]0;owned\x07",  # window title
    "c1-csi": "\x9b31m",  # the 8-bit CSI
    "bidi-override": "gnp.\u202eexe",
    "bidi-isolate": "\u2066hidden\u2069",
    "nul": "a\x00b",
    "carriage-return": "\rERROR CODE: 0x00000000",
    "newline": "\nERROR CODE: 0x00000000",
    "backspace-del": "x\x08\x7f",
    "zero-width": "\u200b\ufeff",
    "line-separator": "\u2028\u2029",
}
ALL = "".join(HOSTILE.values())


def unsafe(text: str) -> list[str]:
    """Characters in ``text`` a terminal would act on (newlines between lines aside)."""
    acted_on = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # controls, format (bidi), surrogates, separators
    return [c for c in text.replace("\n", "") if c != "\t" and unicodedata.category(c) in acted_on]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_kind_of_control_character_is_escaped_visibly(name: str):
    raw = HOSTILE[name]
    shown = printable(raw)
    assert not unsafe(shown) and "\n" not in shown
    assert shown != raw and "\\" in shown
    assert printable(raw + "\ud800") == shown + "\\ud800"  # a lone surrogate is shown, too


def test_ordinary_text_is_left_alone():
    for text in ("Office 21, VOLUME_KMSCLIENT channel", "\tRenewal Interval: 10080", "café Zürich"):
        assert printable(text) == text


@given(st.text())
def test_printable_leaves_nothing_a_terminal_acts_on(text: str):
    shown = printable(text)
    assert not unsafe(shown) and "\n" not in shown
    if not unsafe(text.replace("\n", "\x00")):
        assert shown == text


def test_a_hosts_error_message_is_escaped_on_screen_and_in_the_history(ospp: Ospp):
    rogue = RogueHost(lambda m: {"v": 1, "ok": False, "code": 0xC004F042, "message": ALL})
    try:
        ospp("install-product", "ProPlus2021")
        assert ospp(f"/sethst:127.0.0.1:{rogue.port}").code == 0
        ran = ospp("/act")
    finally:
        rogue.close()
    assert ran.code == 1 and "0xC004F042" in ran.out
    assert not unsafe(ran.out + ran.err), ran.out
    assert "\\x1b[2J" in ran.out and "\\u202e" in ran.out and "\\x9b" in ran.out
    assert [line for line in ran.out.splitlines() if line.startswith("ERROR CODE:")] == [
        "ERROR CODE: 0xC004F042"
    ]
    history = ospp("/dhistorykms")
    assert history.code == 0 and not unsafe(history.out), history.out
    assert "\\x1b]0;owned\\x07" in history.out
    assert not [line for line in history.out.splitlines() if line.startswith("ERROR CODE: 0x0000")]
    # JSON keeps the message exactly, escaped by JSON itself.
    as_json = ospp("dhistorykms", "--json")
    assert "\x1b" not in as_json.out and "\x9b" not in as_json.out
    assert [e["detail"] for e in as_json.data()["entries"]] == [
        f"the KMS host at 127.0.0.1:{rogue.port} refused: {ALL}"
    ]


def test_what_clients_claim_is_escaped_in_kms_clients_and_status(ospp: Ospp):
    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            answer = conn.call(
                raw_request(
                    cmid="\x1b[2J\u202e" + "c" * 30,
                    workstation=ALL,
                    license_status="\x1b]0;t\x07\x9b1m",
                )
            )
    finally:
        host.stop()
    clients = ospp("kms", "clients")
    status = ospp("kms", "status")
    for ran in (clients, status):
        assert ran.code == 0 and not unsafe(ran.out), ran.out
    if answer.get("ok"):  # a host that stores what clients claim must show it escaped
        assert "\\x1b[2j\\u202e" in clients.out.lower() and "\\x1b]0;owned" in clients.out
        assert "\\x1b]0;t\\x07\\x9b1m".upper() in status.out.upper()
    data = ospp("kms", "clients", "--json")
    assert "\x1b" not in data.out and "\u202e" not in data.out


@pytest.mark.parametrize(
    "args",
    [
        ["/\x1b[31mred"],
        ["/\u202e"],
        ["products", "\x1b]0;owned\x07"],
        ["slmgr", "/\x1b[2J"],
        ["/dstatus", "a", "b", "c", "\u202ex"],
    ],
    ids=["unknown option", "bidi option", "extra argument", "slmgr option", "too many words"],
)
def test_what_was_typed_is_escaped_in_a_usage_error(ospp: Ospp, args: list[str]):
    """click's usage errors quote the words typed: on a terminal an escape sequence in them
    would be obeyed, and a bidi override is never stripped."""
    ran = ospp.proc(*args)
    assert ran.code == 2 and "0x80070057" in ran.err, ran.err
    assert not unsafe(ran.err) and not unsafe(ran.out), ran.err
    assert "\\x1b" in ran.err or "\\u202e" in ran.err, ran.err
