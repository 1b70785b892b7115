"""Typing a confirmation ID by hand: pasting, re-typing a wrong group, cancelling."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from tests.conftest import PRODUCT, Ospp
from tests.test_authority import iid_of, issue


def _dump(ospp: Ospp, machine: str = "localhost") -> list[str]:
    with sqlite3.connect(ospp.store_file(machine)) as conn:
        return list(conn.iterdump())


def _cid(ospp: Ospp, machine: str | None = None) -> str:
    args = [machine] if machine else []
    ospp("install-product", PRODUCT, *args)
    ospp("/inpkey:" + issue(ospp), *args)
    return str(ospp("center", "confirm", iid_of(ospp, machine), "--json").data()["cid"])


def test_a_pasted_cid_or_several_groups_at_one_prompt_are_split(ospp: Ospp) -> None:
    cid = _cid(ospp)
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    # three groups on the first line, with a wrong fourth group in a paste of the rest
    wrong = groups[5][:5] + str((int(groups[5][5]) + 1) % 10)
    answers = [" ".join(groups[:3]), "-".join([*groups[3:5], wrong]), "".join(groups[5:])]
    ran = ospp.proc("actcid", "--interactive", input="\n".join(answers) + "\n")
    assert ran.code == 0, ran.out + ran.err
    assert "group 6 of the confirmation ID is wrong" in ran.err
    # asked for groups 1, 4 and (again) 6 only: the good groups of each paste were kept
    asked = [p.split(" of ")[0] for p in ran.err.split("Group ")[1:]]
    assert asked == ["1", "4", "6"]
    lines = ran.out.splitlines()
    success = lines.index("<Offline product activation successful>")
    assert lines[success - 1].startswith("LICENSE NAME: Office 21, ")


def test_an_empty_line_asks_for_the_same_group_again_keeping_those_typed(ospp: Ospp) -> None:
    """Enter pressed twice while the agent reads: the groups typed so far are kept."""
    cid = _cid(ospp)
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    answers = [" ".join(groups[:4]), "", "  ", "-", " ".join(groups[4:])]
    ran = ospp.proc("actcid", "--interactive", input="\n".join(answers) + "\n")
    assert ran.code == 0, ran.out + ran.err
    asked = [p.split(" of ")[0] for p in ran.err.split("Group ")[1:]]
    assert asked == ["1", "5", "5", "5", "5"]
    assert ospp("dstatus", "--json").data()["products"][0]["status"] == "LICENSED"


def test_interactive_takes_a_lone_argument_as_the_computer_name(ospp: Ospp) -> None:
    cid = _cid(ospp, "ph1")
    ran = ospp.proc("actcid", "--interactive", "PH1", input=cid + "\n")
    assert ran.code == 0, ran.out + ran.err
    assert ospp("dstatus", "ph1", "--json").data()["products"][0]["status"] == "LICENSED"


def test_end_of_input_cancels_and_changes_nothing(ospp: Ospp) -> None:
    cid = _cid(ospp)
    before = _dump(ospp)
    ran = ospp.proc("actcid", "--interactive", "--json", input=cid[:18] + "\n")
    assert ran.code == 1
    assert "cancelled" in ran.json()["error"]["message"] and "Traceback" not in ran.err
    assert _dump(ospp) == before


def test_ctrl_c_cancels_with_status_130_and_changes_nothing(ospp: Ospp) -> None:
    cid = _cid(ospp)
    before = _dump(ospp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ospp", "actcid", "--interactive"],
        env={**os.environ, **ospp.env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(cid[:12] + "\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    seen = ""
    while "Group 3 of 20" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "cancelled" in out and "Traceback" not in err
    assert _dump(ospp) == before


def test_a_malformed_cid_is_reported_before_the_choice_of_product(ospp: Ospp) -> None:
    ospp("install-product", PRODUCT)
    ospp("install-product", "ProPlus2019")
    ospp("/inpkey:" + issue(ospp))
    ospp("/inpkey:" + issue(ospp, product="ProPlus2019"))
    ran = ospp("/actcid:hello", "--json")
    assert ran.code == 1 and ran.json()["error"]["code"] == "0xC004F02C"


def test_a_line_with_more_digits_than_the_id_has_left_is_typed_again(ospp: Ospp) -> None:
    """An extra group (or a CID pasted after some groups were typed) is refused as a whole,
    never cut off silently: only the digits the ID holds are ever used."""
    from ospp.protocol.digit_groups import TooManyGroups
    from ospp.protocol.phone import cid_entry, iid_entry

    cid = _cid(ospp)
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    entry = cid_entry()
    assert entry.feed(" ".join(groups[:19])) is None
    extra = entry.feed(groups[19] + " 123456")  # the last group and one more
    assert isinstance(extra, TooManyGroups) and extra.code == 0xC004F02F
    assert entry.index == 20  # nothing of that line was kept
    assert entry.feed(groups[19]) is None and entry.done
    assert isinstance(iid_entry().feed("1234567 " * 10), TooManyGroups)
    # the interactive CID entry says so and asks for group 20 again
    answers = [" ".join(groups[:19]), groups[19] + " garbage", groups[19]]
    ran = ospp.proc("actcid", "--interactive", input="\n".join(answers) + "\n")
    assert ran.code == 0, ran.out + ran.err
    assert "more than 6" in ran.err or "more than 7" in ran.err, ran.err
    assert [p.split(" of ")[0] for p in ran.err.split("Group ")[1:]] == ["1", "20", "20"]


def test_a_computer_name_in_place_of_the_cid_gets_a_hint(ospp: Ospp) -> None:
    ran = ospp("/actcid", "PC1")
    assert ran.code == 1 and "0xC004F02C" in ran.out
    assert "HINT: /actcid takes the confirmation ID first: ospp /actcid:CID PC1" in ran.out


def test_a_short_group_is_named_and_swapped_groups_get_a_hint(ospp: Ospp) -> None:
    cid = _cid(ospp)
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    before = _dump(ospp)
    short = "-".join([groups[0], groups[1][:5], *groups[2:]])
    ran = ospp("actcid", short, "--json").json()["error"]
    assert ran["code"] == "0xC004F02F"
    assert ran["message"] == (
        f"group 2 of the confirmation ID must be 6 digits, not {groups[1][:5]!r}"
    )
    # each group still checks: the signature does not (too large, or for another IID)
    for a, b in ((0, 1), (18, 19)):
        order = list(groups)
        order[a], order[b] = order[b], order[a]
        ran = ospp("actcid", "-".join(order), "--json").json()["error"]
        assert ran["code"] == "0xC004F031" and "typed in the order they were read" in ran["hint"]
    assert _dump(ospp) == before


def test_a_pasted_id_with_a_short_group_names_that_group(ospp: Ospp) -> None:
    """A digit left out of group 2 of a pasted CID shifts every later digit: the check digit
    that then fails is not the reason, the short group is."""
    cid = _cid(ospp)
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    pasted = " ".join([groups[0], groups[1][:5], *groups[2:]])
    answers = [pasted, groups[1], " ".join(groups[2:])]
    ran = ospp.proc("actcid", "--interactive", input="\n".join(answers) + "\n")
    assert ran.code == 0, ran.out + ran.err
    assert f"group 2 of the confirmation ID must be 6 digits, not '{groups[1][:5]}'" in ran.err
    assert "check digit" not in ran.err


def test_a_cid_pasted_with_en_dashes_names_the_character_not_extra_digits(ospp: Ospp) -> None:
    """A confirmation ID copied from a mail or a document often has its dashes turned into
    en dashes: the wizard and actcid --interactive said the line held more digits than the
    ID has left (the 120 digits were right), and no group was kept."""
    cid = _cid(ospp)
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    pasted = "\u2013".join(groups)
    typed = ospp.proc("actcid", "--interactive", input=pasted + "\n")
    assert typed.code == 1 and "0x800704C7" in typed.out  # input ended: cancelled
    assert "more than 120" not in typed.err and "group 2 of the confirmation ID" in typed.err
    ran = ospp.proc("wizard", input=f"2\n1\n{pasted}\n{' '.join(groups[1:])}\n")
    assert ran.code == 0, ran.out + ran.err
    assert "Group 2 is wrong (0xC004F02F): '\u2013' is not a digit from 0 to 9." in ran.out
    assert "more digits" not in ran.out


def test_a_cid_typed_with_spaces_and_no_quotes_is_named_as_one(ospp: Ospp) -> None:
    """A CID read out on the phone and typed with spaces, unquoted, comes as several words:
    /actcid took its first group for the whole ID and the next for a computer name, USER and
    PASSWORD (or refused them as extra arguments); slmgr /atp took them for an ActID and a
    computer. Each says the ID must be one argument, and nothing changes."""
    cid = _cid(ospp)
    groups = [cid[i : i + 6] for i in range(0, 120, 6)]
    before = _dump(ospp)
    pairs = ["-".join(groups[i : i + 2]) for i in range(0, 20, 2)]
    for words in (
        groups[:2],
        groups[:4],
        groups,
        pairs,  # the groups joined in pairs: the later words have dashes too
        pairs[:4],
        [groups[0], "-".join(groups[1:3])],
        ["-".join(groups[:2]), "-".join(groups[2:])],
    ):
        for command in (["/actcid:" + words[0]], ["actcid", words[0]], ["slmgr", "/atp", words[0]]):
            ran = ospp(*command, *words[1:], "--json").json()
            assert ran["error"]["exit_status"] == 2, (command, ran)
            assert ran["error"]["code"] == "0x80070057"
            message = ran["error"]["message"]
            assert f"it came as {len(words)} separate words: put it in quotes" in message
            assert "USER and PASSWORD" not in ospp(*command, *words[1:]).err
    assert _dump(ospp) == before
    ran = ospp("/actcid:" + " ".join(groups))  # the same groups, quoted: one argument
    assert ran.code == 0, ran.out + ran.err


def test_a_whole_cid_before_a_computer_named_in_digits_is_not_taken_for_a_split_one(
    ospp: Ospp,
) -> None:
    """A computer name may be all digits (and dashes): after a whole CID it is the
    computer's."""
    for machine in ("123456", "10-20"):
        cid = _cid(ospp, machine)
        ran = ospp("/actcid:" + cid, machine)
        assert ran.code == 0, ran.out + ran.err
        assert ospp("slmgr", "/atp", cid, machine).code == 0


def test_the_cli_counts_a_cids_digits_as_the_phone_centre_does() -> None:
    from ospp.cli.slash import CID_DIGITS
    from ospp.protocol.phone import CID_GROUP_DATA, CID_GROUPS

    assert CID_DIGITS == CID_GROUPS * (CID_GROUP_DATA + 1)  # a check digit per group
