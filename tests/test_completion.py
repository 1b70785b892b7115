"""TAB completion in real bash, zsh and fish: what the shell shows after a partial command.

Each test starts the shell in a pseudo-terminal with the script from completions/ sourced and
this environment's ``ospp`` on PATH, types, presses TAB and reads the terminal's screen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Ospp
from tests.shellpty import Terminal, missing

SHELLS = ("bash", "zsh", "fish")
# bash lists the candidates on the second TAB; zsh and fish on the first
LIST_TABS = {"bash": 2, "zsh": 1, "fish": 1}


@pytest.fixture(params=SHELLS)
def term(request: pytest.FixtureRequest, ospp: Ospp, tmp_path: Path) -> Iterator[Terminal]:
    shell: str = request.param
    reason = missing(shell)
    if reason:
        pytest.skip(reason)
    for machine in ("lab-7", "pc01"):
        assert ospp("install-product", "ProPlus2021", machine).code == 0
    (Path(ospp.env["OSPP_HOME"]) / "machines" / "ghost").mkdir()  # no licence store in it
    terminal = Terminal(shell, tmp_path / "shell", ospp.env)
    yield terminal
    terminal.close()


def _listed(term: Terminal, typed: str, shown: list[str]) -> str:
    """Type ``typed``, ask for the list of candidates, and wait until each of ``shown`` is on
    the screen as a word of its own. Give ``typed`` whole up to the candidates' common prefix:
    bash lists on the second TAB only when the first completed nothing."""
    term.type(typed + "\t" * LIST_TABS[term.shell])

    def all_shown(text: str) -> bool:
        # fish shows a long common prefix as '…'
        tokens = text.split()
        return all(
            any(t == word or (t[:1] == "…" and word.endswith(t[1:])) for t in tokens)
            for word in shown
        )

    return term.wait_for(all_shown, f"{shown} after {typed!r}")


@pytest.mark.parametrize(
    ("typed", "line"),
    [
        ("ospp /cachst:T", "ospp /cachst:TRUE @"),
        ("ospp /CACHST:f", "ospp /CACHST:FALSE @"),
        ("ospp /kms-policy:on", "ospp /kms-policy:online-only @"),
        ("ospp /inp", "ospp /inpkey:@"),  # the value follows: no space
        ("ospp /dstatus l", "ospp /dstatus lab-7 @"),
        ("ospp /cachst:TRUE p", "ospp /cachst:TRUE pc01 @"),
        ("ospp center issue-key --product VisioPro2016", "--product VisioPro2016 @"),
        ("ospp /sethst:k", "ospp /sethst:k@"),  # a host name: nothing to offer
        ("ospp /sethst:", "ospp /sethst:@"),
        # a word in quotes: bash replaces all of it after the quote, ':' or not
        ('ospp "/cachst:T', 'ospp "/cachst:TRUE" @'),
        ("ospp '/kms-policy:on", "ospp '/kms-policy:online-only' @"),
    ],
)
def test_tab_completes_the_word(term: Terminal, typed: str, line: str) -> None:
    screen = term.complete(typed)
    assert term.line().endswith(line), screen
    assert "Traceback" not in screen


@pytest.mark.parametrize("word", ["/sethst:", "/cachst:", "/actype:", "/sethst:k", "/nope:x"])
def test_no_traceback_over_the_prompt(term: Terminal, word: str) -> None:
    screen = term.complete(f"ospp {word}", tabs=LIST_TABS[term.shell])
    assert "Traceback" not in screen and "Error" not in screen, screen
    assert term.line().endswith(f"ospp {word}@"), screen


def test_fixed_values_of_cachst_and_actype(term: Terminal) -> None:
    # bash replaces only what follows the ':' and lists just that part
    full = term.shell != "bash"
    screen = _listed(
        term, "ospp /cachst:", ["/cachst:TRUE", "/cachst:FALSE"] if full else ["TRUE", "FALSE"]
    )
    if full:
        assert "Allow KMS host caching" in screen and "Deny KMS host caching" in screen
    term.type("\x03")  # a fresh prompt
    term.wait_for(lambda _: term.line().rstrip().endswith(">"), "a fresh prompt")
    screen = _listed(term, "ospp /actype:", ["/actype:0", "/actype:2"] if full else ["0", "2"])
    assert not re.search(r"(?<!\S)(/actype:)?[13](?!\S)", screen), screen  # refused types
    assert "Traceback" not in screen


def test_product_ids(term: Terminal) -> None:
    years = ("2024", "2021", "2019", "2016", "2013", "2010")
    screen = _listed(term, "ospp install-product Standard20", [f"Standard{y}" for y in years])
    assert "ProPlus2021" not in screen
    if term.shell != "bash":
        assert "Office LTSC Standard 2021" in screen
    term.type("\x03")
    term.wait_for(lambda _: term.line().rstrip().endswith(">"), "a fresh prompt")
    _listed(term, "ospp center issue-key --product VisioPro20", [f"VisioPro{y}" for y in years])


def test_machine_names(term: Terminal) -> None:
    screen = _listed(term, "ospp /dstatus ", ["lab-7", "pc01"])
    assert "ghost" not in screen  # a directory without a licence store is no machine


def test_descriptions_are_shown_whole(term: Terminal) -> None:
    if term.shell == "bash":
        pytest.skip("bash shows no descriptions")
    screen = _listed(term, "ospp /set", ["/sethst:", "/setprt:"])
    # fish used to cut a description at its first comma
    assert "Set the KMS host: name, IPv4, [IPv6], optionally with :port." in screen


@pytest.mark.parametrize("shell", SHELLS)
def test_slmgr_completes_its_options(shell: str, ospp: Ospp, tmp_path: Path) -> None:
    reason = missing(shell)
    if reason:
        pytest.skip(reason)
    term = Terminal(shell, tmp_path / "shell", ospp.env, prog="slmgr")
    try:
        screen = _listed(term, "slmgr /dl", ["/dli", "/dlv"])
        if shell != "bash":
            assert "Display detailed licence information." in screen
        term.type("\x03")
        term.wait_for(lambda _: term.line().rstrip().endswith(">"), "a fresh prompt")
        term.complete("slmgr /ip")
        assert term.line().endswith("slmgr /ipk @"), term.text
    finally:
        term.close()


def _bash_answer(
    ospp: Ospp, line: str, wordbreaks: str, debug: bool = False, point: int | None = None
) -> tuple[list[str], str]:
    """What ``ospp`` answers the bash script from completions/ for ``line``, the cursor at
    ``point`` (bash counts characters in a UTF-8 locale) or at the end."""
    env = {
        **os.environ,
        **ospp.env,
        "_OSPP_COMPLETE": "bash_complete",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line) if point is None else point),
        "COMP_WORDBREAKS": wordbreaks,
        "COMP_WORDS": "unused",
        "COMP_CWORD": "0",
    }
    env.pop("OSPP_DEBUG", None)
    if debug:
        env["OSPP_DEBUG"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "ospp"], env=env, capture_output=True, text=True, timeout=60
    )
    return [line for line in done.stdout.splitlines() if line], done.stderr


def test_bash_gets_the_part_it_replaces(ospp: Ospp) -> None:
    # bash's default COMP_WORDBREAKS has ':': it replaces only what follows the last one
    assert _bash_answer(ospp, "ospp /cachst:T", " \t\n\"'><=;|&(:") == (["plain,TRUE"], "")
    # bash-completion users often take ':' out: then the whole word is replaced
    assert _bash_answer(ospp, "ospp /cachst:T", " \t\n") == (["plain,/cachst:TRUE"], "")
    assert _bash_answer(ospp, "ospp /sethst:h:1", " \t\n:") == ([], "")
    # the cursor inside the line
    line = "ospp /cachst:F ünïcode"
    assert _bash_answer(ospp, line, ":", point=len("ospp /cachst:F")) == (["plain,FALSE"], "")
    # COMP_POINT counts characters, not bytes
    for machine in ("pa1", "pb1"):
        assert ospp("install-product", "ProPlus2021", machine).code == 0
    assert _bash_answer(ospp, "ospp install-product ü pb", ":") == (["plain,pb1"], "")


def test_help_and_hardware_change_complete_what_they_take(ospp: Ospp) -> None:
    """'ospp help' takes command names, a group's commands after the group; 'hardware
    change' takes components, then a machine."""

    def offered(line: str) -> list[str]:
        answer, err = _bash_answer(ospp, line, " \t\n")
        assert err == ""
        return [item.removeprefix("plain,") for item in answer]

    assert {"kms", "kms-policy"} == set(offered("ospp help k"))
    assert "serve" in offered("ospp help kms ") and "publish" in offered("ospp help kms dns ")
    assert offered("ospp help /dst") == ["/dstatus", "/dstatusall"]
    assert offered("ospp help nope ") == [] and offered("ospp help kms serve ") == []
    assert ospp("install-product", "ProPlus2021", "pc01").code == 0
    assert offered("ospp hardware change n") == ["nic_mac"]
    assert "disk" in offered("ospp hardware change nic_mac ")
    assert offered("ospp hardware change disk p") == ["pc01"]


def test_a_failing_completion_offers_nothing_quietly(ospp: Ospp) -> None:
    # 'nope' is no command: the completion cannot go on, and must not print over the prompt
    assert _bash_answer(ospp, "ospp nope ", ":") == ([], "")
    out, err = _bash_answer(ospp, "ospp nope ", ":", debug=True)
    assert out == [] and "unknown command 'nope'" in err  # OSPP_DEBUG shows why


def test_a_path_after_a_slash_name_is_completed(ospp: Ospp, tmp_path: Path) -> None:
    """/inslic:PATH: bash, zsh and fish complete no file name behind '/inslic:', so ospp lists
    the paths itself."""
    folder = tmp_path / "Licenses16"
    folder.mkdir()
    for name in ("ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms", "ProPlus2021VL_MAK_AE-pl.xrm-ms"):
        (folder / name).write_text("<x/>")
    (folder / "ProPlus-old").mkdir()
    typed = f"ospp /inslic:{folder}/ProPlus2021VL_K"
    whole = f"/inslic:{folder}/ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms"
    assert _bash_answer(ospp, typed, " \t\n") == ([f"plain,{whole}"], "")
    assert _bash_answer(ospp, typed, " \t\n:") == ([f"plain,{whole.partition(':')[2]}"], "")
    listed, _ = _bash_answer(ospp, f"ospp /INSLIC:{folder}/ProPlus", " \t\n")
    assert listed == [
        f"plain,/INSLIC:{folder}/ProPlus-old{os.sep}",
        f"plain,/INSLIC:{folder}/ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms",
        f"plain,/INSLIC:{folder}/ProPlus2021VL_MAK_AE-pl.xrm-ms",
    ]
    # the modern form leaves it to the shell's own file completion
    assert _bash_answer(ospp, f"ospp inslic {folder}/P", " \t\n") == (
        [f"file,{folder}/P"],
        "",
    )


def test_tab_completes_a_path_with_a_space_behind_inslic(term: Terminal, tmp_path: Path) -> None:
    """The shell gets the path as one word: escaped, or inside the quotes typed before it."""
    folder = tmp_path / "Office 16" / "root"
    folder.mkdir(parents=True)
    (folder / "ProPlus2021VL_MAK_AE-pl.xrm-ms").write_text("<x/>")
    typed = f"ospp /inslic:{tmp_path}/Office\\ 16/root/Pro"
    screen = term.complete(typed)
    whole = f"/inslic:{tmp_path}/Office\\ 16/root/ProPlus2021VL_MAK_AE-pl.xrm-ms @"
    assert term.line().endswith(whole), screen
    term.type("\x03")
    term.wait_for(lambda _: term.line().rstrip().endswith(">"), "a fresh prompt")
    screen = term.complete(f'ospp "/inslic:{tmp_path}/Office 16/root/Pro')
    whole = f'"/inslic:{tmp_path}/Office 16/root/ProPlus2021VL_MAK_AE-pl.xrm-ms" @'
    assert term.line().endswith(whole), screen


def test_tab_completes_a_licence_file_behind_inslic(term: Terminal, tmp_path: Path) -> None:
    folder = tmp_path / "lic"
    folder.mkdir()
    (folder / "ProPlus2021VL_MAK_AE-pl.xrm-ms").write_text("<x/>")
    screen = term.complete(f"ospp /inslic:{folder}/ProPlus")
    assert term.line().endswith(f"ospp /inslic:{folder}/ProPlus2021VL_MAK_AE-pl.xrm-ms @"), screen


def test_completing_after_user_and_password_prints_no_note(ospp: Ospp) -> None:
    """'slmgr MACHINE USER PASSWORD /option': the note that USER and PASSWORD are ignored is
    for a command that runs, never for TAB, which would print it over the prompt."""
    assert ospp("install-product", "ProPlus2021", "pc01").code == 0
    for prog, words in (
        ("slmgr", ["slmgr", "pc01", "admin", "secret", "/dli", ""]),
        ("slmgr", ["slmgr", "-q", "pc01", "admin", "secret", "/dli", ""]),
        ("ospp", ["ospp", "slmgr", "pc01", "admin", "secret", "/dli", ""]),
        ("ospp", ["ospp", "/dstatus", "pc01", "admin", "secret", ""]),
        ("ospp", ["ospp", "dstatus", "pc01", "admin", ""]),
    ):
        env = {
            **os.environ,
            **ospp.env,
            f"_{prog.upper()}_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(words),
            "COMP_CWORD": str(len(words) - 1),
        }
        env.pop("OSPP_DEBUG", None)
        module = "ospp.cli.slmgr" if prog == "slmgr" else "ospp.cli"
        code = f"from {module} import main; main()"
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stderr) == (0, ""), (words, done)
        if "/dli" in words:
            assert "plain,all" in done.stdout.splitlines(), (words, done.stdout)
