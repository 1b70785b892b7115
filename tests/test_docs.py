"""The man page and completions are generated from the CLI and must not drift from it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ospp.cli import cli
from ospp.cli.docs import (
    COMPLETION_FILES,
    SLMGR_COMPLETION_FILES,
    completion,
    manpage,
    slmgr_manpage,
)

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "run: python -m ospp.cli.docs ."


def test_json_schemas_are_current():
    from ospp.cli.reports import schema_files

    folder = ROOT / "docs" / "schema"
    on_disk = {p.name: p.read_text() for p in folder.glob("*.json")}
    assert on_disk == schema_files(), REGENERATE


def test_man_page_is_current():
    assert (ROOT / "man" / "ospp.1").read_text() == manpage(cli), REGENERATE


def test_slmgr_man_page_is_current_and_lists_every_option():
    from ospp.cli.slmgr import COMMANDS

    page = (ROOT / "man" / "slmgr.1").read_text()
    assert page == slmgr_manpage(COMMANDS[0]), REGENERATE
    assert ".TH SLMGR 1 " in page and ".BR ospp (1)" in page
    group = COMMANDS[0]
    ctx = click.Context(group, info_name="slmgr")
    for name in group.list_commands(ctx):
        assert "\\fB/" + name.replace("-", "\\-") in page, name  # '-' as roff writes it


def test_slmgr_man_page_has_the_options_of_slmgr_itself_and_real_variables():
    """slmgr takes --json and -q/--quiet as ospp does: its page says so, and it names only
    the environment variables ospp(1) documents."""
    from ospp.cli.slmgr import COMMANDS

    page = slmgr_manpage(COMMANDS[0])
    for names in ("\\-\\-json", "\\-\\-quiet, \\-q", "\\-\\-help, \\-h"):
        assert f"\\fB{names}\\fR" in page, names
    ospp_page = manpage(cli)
    for variable in set(re.findall(r"OSPP_[A-Z_]+", page)):
        assert f".B {variable}\n" in ospp_page, variable


@pytest.mark.parametrize("shell", sorted(COMPLETION_FILES))
def test_completion_scripts_are_current(shell):
    assert (ROOT / "completions" / COMPLETION_FILES[shell]).read_text() == completion(cli, shell), (
        REGENERATE
    )


@pytest.mark.parametrize("shell", sorted(SLMGR_COMPLETION_FILES))
def test_slmgr_completion_scripts_are_current(shell):
    from ospp.cli.slmgr import COMMANDS

    path = ROOT / "completions" / SLMGR_COMPLETION_FILES[shell]
    assert path.read_text() == completion(COMMANDS[0], shell, "slmgr"), REGENERATE


def test_man_page_has_the_slmgr_options():
    page = manpage(cli)
    assert ".SH SLMGR.VBS OPTIONS" in page
    for option in ("/ipk KEY [COMPUTERNAME]", "/dli [ActID|all] [COMPUTERNAME]", "/sai MINUTES"):
        assert f"\\fB{option}\\fR" in page


def test_slmgr_completion_offers_slash_options():
    env = {
        **os.environ,
        "_SLMGR_COMPLETE": "bash_complete",
        "COMP_WORDS": "slmgr /dl",
        "COMP_CWORD": "1",
    }
    code = "from ospp.cli.slmgr import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    offered = [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]
    assert offered == ["/dli", "/dlv"], done.stdout + done.stderr


def test_slmgr_completion_offers_dash_forms_machines_and_all(ospp):
    """slmgr.vbs takes -dlv as it takes /dlv; after an option, the machines (and 'all' where
    the option takes it)."""
    assert ospp("install-product", "ProPlus2021", "pc01").code == 0

    def offered(*words: str) -> list[str]:
        env = {
            **os.environ,
            **ospp.env,
            "_SLMGR_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(["slmgr", *words]),
            "COMP_CWORD": str(len(words)),  # the last word, the one being completed
        }
        code = "from ospp.cli.slmgr import main; main()"
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
        )
        return [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]

    assert offered("-dl") == ["-dli", "-dlv"]
    assert "--json" in offered("-") and "-ipk" in offered("-")
    assert offered("/dlv", "") == ["all", "pc01"]
    assert offered("/dli", "a") == ["all"]
    assert offered("/ipk", "KEY", "") == ["pc01"]
    # slmgr.vbs's own order: the machine (and its user and password) before the option
    assert offered("pc01", "/dl") == ["/dli", "/dlv"]
    assert offered("PC01", "admin", "secret", "-dl") == ["-dli", "-dlv"]
    assert offered("/ato", "p") == ["pc01"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_lints_with_groff():
    done = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(ROOT / "man" / "ospp.1"), str(ROOT / "man" / "slmgr.1")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed")
def test_man_page_lints_with_mandoc():
    # -Wall: style messages too (a source line over 80 columns is one)
    done = subprocess.run(
        ["mandoc", "-Tlint", "-Wall", str(ROOT / "man" / "ospp.1"), str(ROOT / "man" / "slmgr.1")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def _section(page: str, name: str) -> list[str]:
    lines = page.splitlines()
    start = lines.index(f".SH {name}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(".SH ")), len(lines))
    return lines[start:end]


def _text(roff: list[str]) -> str:
    """Text lines of a roff fragment as plain text."""
    words = " ".join(line.removeprefix("\\&") for line in roff)
    return words.replace("\\-", "-").replace("\\e", "\\")


def test_man_page_source_fits_80_columns_without_hanging_indents():
    page = manpage(cli)
    literal = False
    for line in page.splitlines():
        literal = (literal or line.startswith(".nf")) and not line.startswith(".fi")
        assert len(line) <= 80, line
        # a docstring's continuation lines used to keep their indentation in the page
        assert literal or not line[:1].isspace(), line


def test_man_page_error_codes_list_every_code_ospp_can_print():
    from ospp.core.errors import DESCRIPTIONS
    from tests.test_codes import _printable_codes

    section = _section(manpage(cli), "ERROR CODES")
    entries: dict[str, list[str]] = {}
    for i, line in enumerate(section):
        if line == ".TP":
            tag = section[i + 1].removeprefix(".B ")
            body = section[i + 2 :]
            entries[tag] = body[: next((j for j, b in enumerate(body) if b == ".TP"), len(body))]
    codes = _printable_codes()
    assert {0x80072EFD, 0x8007232D, 0x80072331, 0x80072339} <= codes  # found missing in /ddescr
    for value in codes:
        text = f"0x{value:08X}"
        assert text in entries, f"{text} is not in ERROR CODES"
        assert _text(entries[text]) == DESCRIPTIONS[value]


def test_ddescr_hint_points_to_a_section_that_exists(ospp):
    ran = ospp("/ddescr:0x12345678")
    assert ran.code == 1 and "section ERROR CODES" in ran.out
    assert ".SH ERROR CODES" in manpage(cli)


def test_man_page_documents_every_option_and_version():
    page = manpage(cli)
    assert "\\fB\\-\\-version\\fR" in "\n".join(_section(page, "OPTIONS"))
    ctx = click.Context(cli, info_name="ospp")
    for name, cmd in _walk(cli, ctx):
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{name} {param.opts[0]} has no help"


def test_man_page_environment_names_every_variable_ospp_reads():
    import re

    source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "ospp").rglob("*.py"))
    read = set(re.findall(r"\"(OSPP_[A-Z_]+)\"", source))
    assert {"OSPP_HOME", "OSPP_CENTER_HOME", "OSPP_KMS_HOME"} <= read
    documented = set(
        re.findall(r"^\.B (OSPP_[A-Z_]+)$", "\n".join(_section(manpage(cli), "ENVIRONMENT")), re.M)
    )
    assert read <= documented, sorted(read - documented)
    environment = _text(_section(manpage(cli), "ENVIRONMENT"))
    # the role homes follow OSPP_HOME when only it is set
    assert "Default: $OSPP_HOME/center when OSPP_HOME is set" in environment
    assert "Default: $OSPP_HOME/kms when OSPP_HOME is set" in environment


def _walk(group: click.Group, ctx: click.Context):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        yield name, cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, click.Context(cmd, info_name=name, parent=ctx))


def test_every_command_has_help_json_and_a_man_entry():
    ctx = click.Context(cli, info_name="ospp")
    page = manpage(cli)
    for name, cmd in _walk(cli, ctx):
        assert cmd.help, f"{name} has no help"
        assert name.replace("-", "\\-") in page, f"{name} is not in the man page"
        # demo prints a transcript, pubkey prints JSON always, serve runs a server, help
        # prints help
        if not isinstance(cmd, click.Group) and name not in ("demo", "pubkey", "serve", "help"):
            assert any(p.name == "as_json" for p in cmd.params), f"{name} has no --json"
    # and each command with --json has a schema (docs/schema/, ospp/cli/reports.py)
    from ospp.cli.reports import schemas
    from ospp.cli.schema import command_paths

    with_json = set(schemas())
    for path in command_paths(cli, ctx):
        cmd = cli
        for word in path.split():
            found = cmd.get_command(ctx, word) if isinstance(cmd, click.Group) else None
            assert found is not None
            cmd = found
        has_json = any(p.name == "as_json" for p in cmd.params)
        assert has_json == (path in with_json), f"{path}: --json and a schema go together"


def _complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_OSPP_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    done = subprocess.run(
        [sys.executable, "-m", "ospp"], env=env, capture_output=True, text=True, timeout=30
    )
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]


def test_completion_offers_slash_forms_and_modern_names():
    slash = _complete("ospp /dst")
    assert "/dstatus" in slash and "/dstatusall" in slash
    assert "/inpkey:" in _complete("ospp /inp")
    assert "dstatus" in _complete("ospp dst")


def test_lazy_command_table_matches_the_modules():
    import importlib

    from ospp.cli import MODULES

    for module, names in MODULES.items():
        defined = [c.name for c in importlib.import_module(module).COMMANDS]
        assert sorted(defined) == sorted(names), module


def test_dstatus_does_not_import_the_servers():
    code = (
        "import sys; from ospp.cli import main; sys.argv=['ospp','/dstatus'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in ('asyncio','cryptography','dns','ospp.cli.kmshost','ospp.kms')"
        " if m in sys.modules]\nprint('LOADED', bad)"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "OSPP_HOME": home},
            timeout=60,
        )
    assert "LOADED []" in done.stdout, done.stdout + done.stderr


def test_man_pages_give_every_meaning_of_an_exit_status_the_readme_gives():
    """A script's author reading the page learns that 3 may be the output, not the store,
    and that 1 may be a reader that went away, as the README's table says."""
    from ospp.cli.slmgr import COMMANDS

    readme = (ROOT / "README.md").read_text()
    assert "cannot be written (`> /dev/full`, or closed: `>&-`)" in readme
    assert "a reader that went away before the output ended" in readme
    for page in (manpage(cli), slmgr_manpage(COMMANDS[0])):
        section = page.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
        text = " ".join(section.replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").split())
        assert "standard output that cannot be written (> /dev/full, or closed: >&-)" in text
        assert "a reader that went away before the output ended" in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_example_of_a_reader_that_went_away_exits_1(tmp_path: Path):
    """The README's and the man pages' example of exit status 1 for a reader that went away
    is one that shows it (a reader that takes the first bytes and leaves may have had the
    whole output already, exit 0): a reader that reads nothing. Run here without the race of
    a shell pipeline, the read end closed before ospp starts."""
    from ospp.cli.slmgr import COMMANDS

    readme = (ROOT / "README.md").read_text()
    found = re.search(r"a reader that went away before the output ended \(`([^`]+)`\)", readme)
    assert found is not None
    example = found[1].replace("\\|", "|")
    assert example == "ospp products | true"
    roff = example.replace("-", "\\-")
    for page in (manpage(cli), slmgr_manpage(COMMANDS[0])):
        assert f"(\\fB{roff}\\fR)" in page
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ospp", "products"],
            env={**os.environ, "OSPP_HOME": str(tmp_path)},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.returncode == 1, done.stderr
