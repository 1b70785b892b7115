"""Generate the man page and the shell completion scripts from the click tree.

``python -m ospp.cli.docs`` rewrites ``man/ospp.1`` and ``completions/``; a test fails when the
committed files differ from what this produces.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path

import click

from ospp import __version__
from ospp.cli.mantext import (
    ERROR_CODES,
    EXIT_STATUS,
    HEAD,
    SLMGR_HEAD,
    SLMGR_RULES,
    SLMGR_TAIL,
    TAIL,
)
from ospp.cli.shells import SHELLS
from ospp.cli.slash import SlashCommand, slash_form
from ospp.cli.slmgr_group import SlmgrGroup
from ospp.core.errors import DESCRIPTIONS, hex_code

MAN_DATE = "2026-11-28"  # bump with each release
WIDTH = 80  # source lines of the page, as mandoc -Tlint wants them
# Named as each shell looks them up, so the wheel installs them unchanged under share/.
COMPLETION_FILES = {"bash": "bash/ospp", "zsh": "zsh/_ospp", "fish": "fish/ospp.fish"}
SLMGR_COMPLETION_FILES = {"bash": "bash/slmgr", "zsh": "zsh/_slmgr", "fish": "fish/slmgr.fish"}


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _prose(text: str, between: str = ".PP") -> list[str]:
    """A docstring as roff: its paragraphs each on one line (wrapped later), ``between`` them."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text.split("\f")[0]).strip())
    out: list[str] = []
    for paragraph in paragraphs:
        if out:
            out.append(between)
        out.append(_roff(" ".join(paragraph.split())))
    return out


def _option_help(param: click.Option) -> str:
    text = param.help or ""
    if param.show_default and param.default is not None and not param.is_flag:
        text += f" Default: {param.default}."
    return text.strip()


def _params(
    cmd: click.Command, skip: tuple[str, ...] = (), ctx: click.Context | None = None
) -> list[str]:
    """The options of ``cmd`` (with ``ctx``, also its help option) as tagged paragraphs."""
    out = []
    for param in cmd.get_params(ctx) if ctx is not None else cmd.params:
        if isinstance(param, click.Option):
            if param.hidden or param.name in skip:
                continue
            names = ", ".join(param.opts + param.secondary_opts)
            if param.is_flag:
                meta = ""
            elif isinstance(param.type, click.Choice):
                meta = " {" + "|".join(str(c) for c in param.type.choices) + "}"
            else:
                meta = f" {param.metavar or param.name or ''}".upper()
            out += [".TP", f"\\fB{_roff(names)}\\fR{_roff(meta)}"]
            out += _prose(_option_help(param), ".IP")
    return out


def _usage(path: str, cmd: click.Command) -> str:
    pieces = []
    for param in cmd.params:
        if isinstance(param, click.Argument):
            meta = param.metavar or (param.name or "").upper()
            pieces.append(meta if param.required or meta.startswith("[") else f"[{meta}]")
    return " ".join([path, "[OPTIONS]", *pieces])


def _command_sections(group: click.Group, ctx: click.Context, prefix: str) -> list[str]:
    verbs: list[tuple[str, click.Command]] = []
    others: list[tuple[str, click.Command]] = []
    slmgr_groups: list[tuple[str, SlmgrGroup]] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        if isinstance(cmd, SlmgrGroup):
            slmgr_groups.append((name, cmd))
            continue
        (verbs if isinstance(cmd, SlashCommand) else others).append((name, cmd))
    out: list[str] = []
    if verbs:
        out.append(".SH OSPP.VBS OPTIONS")
        out.append(
            "Each works as \\fB/name[:value]\\fR and as \\fBospp name [value]\\fR, "
            "with an optional trailing COMPUTERNAME and \\fB\\-\\-json\\fR."
        )
        for name, cmd in verbs:
            assert isinstance(cmd, SlashCommand)
            modern = _roff(_usage(f"{prefix} {name}", cmd))
            out += [
                ".TP",
                f"\\fB{_roff(slash_form(name, cmd))}\\fR",
                *_prose(cmd.help or "", ".IP"),
                ".RS",
                f"Modern form: \\fB{modern}\\fR",
            ]
            out += _params(cmd, skip=("as_json",))
            out.append(".RE")
    if others:
        out.append(".SH COMMANDS")
        for name, cmd in others:
            out += _describe(cmd, ctx, f"{prefix} {name}")
    for name, cmd in slmgr_groups:
        out += _slmgr_section(cmd, click.Context(cmd, info_name=name, parent=ctx), prefix)
    return out


def _slmgr_section(group: SlmgrGroup, ctx: click.Context, prefix: str) -> list[str]:
    """slmgr.vbs's options, as 'ospp slmgr /option' and the 'slmgr' command take them."""
    return [".SH SLMGR.VBS OPTIONS", _slmgr_intro(prefix), *_slmgr_options(group, ctx)]


def _slmgr_intro(prefix: str) -> str:
    return (
        f"\\fB{_roff(prefix)} slmgr /option\\fR [\\fIvalue\\fR ...] [\\fIActID\\fR] "
        "[\\fICOMPUTERNAME\\fR] [\\fB\\-\\-json\\fR], or the \\fBslmgr\\fR command "
        f"installed with ospp, take {SLMGR_RULES}"
    )


def _slmgr_options(group: SlmgrGroup, ctx: click.Context) -> list[str]:
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        pieces = [p.make_metavar(ctx) for p in cmd.params if isinstance(p, click.Argument)]
        out += [
            ".TP",
            f"\\fB{_roff(' '.join([f'/{name}', *pieces]))}\\fR",
            _roff(" ".join(inspect.cleandoc((cmd.help or "").split("\f")[0]).split())),
        ]
    return out


def _describe(cmd: click.Command, ctx: click.Context, path: str) -> list[str]:
    out = [
        ".SS " + _roff(path),
        f"\\fB{_roff(_usage(path, cmd))}\\fR",
        ".PP",
        *_prose(cmd.help or ""),
    ]
    out += _params(cmd)
    if isinstance(cmd, click.Group):
        sub_ctx = click.Context(cmd, info_name=path.split()[-1], parent=ctx)
        for name in cmd.list_commands(sub_ctx):
            sub = cmd.get_command(sub_ctx, name)
            if sub is not None and not sub.hidden:
                out += _describe(sub, sub_ctx, f"{path} {name}")
    return out


def _error_codes() -> list[str]:
    """The ERROR CODES section, from the code registry (what /ddescr prints)."""
    out = [ERROR_CODES.rstrip("\n")]
    for code in sorted(DESCRIPTIONS):
        out += [".TP", f".B {hex_code(code)}", _roff(DESCRIPTIONS[code])]
    return out


def _wrap(lines: list[str]) -> list[str]:
    """Fold text lines to WIDTH columns; requests, tags and .nf blocks stay as they are."""
    out: list[str] = []
    literal = False
    for line in lines:
        literal = (literal or line.startswith(".nf")) and not line.startswith(".fi")
        if literal or line.startswith(".") or len(line) <= WIDTH:
            out.append(line)
            continue
        if out and out[-1] == ".TP":
            raise ValueError(f"a tag longer than {WIDTH} columns: {line}")
        for piece in textwrap.wrap(line, WIDTH - 2, break_long_words=False, break_on_hyphens=False):
            out.append("\\&" + piece if piece.startswith((".", "'")) else piece)
    return out


def manpage(cli: click.Group) -> str:
    ctx = click.Context(cli, info_name="ospp", **cli.context_settings)
    body = [HEAD.replace("{version}", __version__).replace("{date}", MAN_DATE).rstrip("\n")]
    body += [".SH OPTIONS", "Options of \\fBospp\\fR itself, before the command:"]
    body += _params(cli, ctx=ctx)
    body += _command_sections(cli, ctx, "ospp")
    body.append(EXIT_STATUS.rstrip("\n"))
    body += _error_codes()
    body.append(TAIL.rstrip("\n"))
    return "\n".join(_wrap("\n".join(body).split("\n"))) + "\n"


def slmgr_manpage(group: SlmgrGroup) -> str:
    """The page of the ``slmgr`` command: its synopsis, the options, the exit statuses."""
    ctx = click.Context(group, info_name="slmgr", **group.context_settings)
    head = SLMGR_HEAD.replace("{version}", __version__).replace("{date}", MAN_DATE)
    body = [
        head.rstrip("\n"),
        SLMGR_RULES,
    ]
    body += [".SH OPTIONS", "Options of \\fBslmgr\\fR itself, anywhere on the command line:"]
    body += _params(group, ctx=ctx)
    body += [".SH SLMGR.VBS OPTIONS", *_slmgr_options(group, ctx)]
    body.append(EXIT_STATUS.rstrip("\n"))
    body.append(SLMGR_TAIL.rstrip("\n"))
    return "\n".join(_wrap("\n".join(body).split("\n"))) + "\n"


def completion(cli: click.Group, shell: str, prog: str = "ospp") -> str:
    cls = SHELLS[shell]
    return cls(cli, {}, prog, f"_{prog.upper()}_COMPLETE").source()


def write_all(root: Path) -> None:
    from ospp.cli import cli

    (root / "man").mkdir(exist_ok=True)
    (root / "man" / "ospp.1").write_text(manpage(cli), encoding="utf-8")
    for shell, name in COMPLETION_FILES.items():
        (root / "completions" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "completions" / name).write_text(completion(cli, shell), encoding="utf-8")
    from ospp.cli.slmgr import COMMANDS as SLMGR

    (root / "man" / "slmgr.1").write_text(slmgr_manpage(SLMGR[0]), encoding="utf-8")
    for shell, name in SLMGR_COMPLETION_FILES.items():
        text = completion(SLMGR[0], shell, "slmgr")
        (root / "completions" / name).write_text(text, encoding="utf-8")
    from ospp.cli.reports import schema_files

    folder = root / "docs" / "schema"
    folder.mkdir(parents=True, exist_ok=True)
    files = schema_files()
    for old in folder.glob("*.json"):  # a command that went away takes its schema with it
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
