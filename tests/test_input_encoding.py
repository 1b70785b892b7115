"""Bytes typed at a dialogue's prompt that the terminal's encoding cannot decode (a Latin-1
terminal under a UTF-8 locale: å is one byte, 0xE5): the prompt says what is wrong and asks
again; the command does not end in an internal error (exit 70)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import Ospp
from tests.test_wizard import _ready


def run(ospp: Ospp, stdin: bytes, *args: str) -> tuple[int, str, str]:
    """``ospp ARGS`` reading ``stdin`` as a UTF-8 locale does (strictly, as Python reads
    standard input under any locale but C)."""
    done = subprocess.run(
        [sys.executable, "-m", "ospp", *args],
        env={**os.environ, **ospp.env, "PYTHONIOENCODING": "utf-8:strict"},
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8", "replace")


def test_the_wizard_asks_again_after_a_byte_the_locale_cannot_decode(ospp: Ospp) -> None:
    key = _ready(ospp)
    code, out, err = run(ospp, key.encode() + b"\n\xe5\n3\n", "wizard", "--lang", "sv")
    assert code == 0, (out, err)
    assert "Skriv ett tal från 1 till 3." in out and "internal error" not in err
    assert "Du blir tillfrågad igen." in out


def test_the_agents_console_asks_again_after_a_byte_the_locale_cannot_decode(
    ospp: Ospp,
) -> None:
    assert ospp("center", "init").code == 0
    code, out, err = run(ospp, b"07233\xe56\n", "center", "phone")
    assert code == 1, (out, err)  # the input then ends: cancelled, nothing logged
    assert "Group 1 is wrong" in out and "internal error" not in err
    assert "Cancelled. Nothing was changed." in out


def test_actcid_interactive_asks_again_after_a_byte_the_locale_cannot_decode(
    ospp: Ospp,
) -> None:
    key = _ready(ospp)
    assert ospp("/inpkey:" + key).code == 0
    code, out, err = run(ospp, b"\xe5\n", "actcid", "--interactive")
    assert code == 1, (out, err)
    assert "type it again" in err and "internal error" not in err
    assert "0x800704C7" in out  # cancelled at the end of input
