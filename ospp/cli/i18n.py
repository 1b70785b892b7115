"""Translated text for the dialogues (wizard, operator console, notifications): gettext.

The catalogues are ``.po`` files in ``ospp/cli/locale/<lang>/LC_MESSAGES/ospp.po``. A compiled
``ospp.mo`` beside one is used when present and newer; otherwise the ``.po`` is compiled in
memory on first use (a few milliseconds, only in commands that print translated text), so a
source checkout and a wheel behave the same with no build step. English is the message ids.

The ospp.vbs-format output (``/dstatus`` and the rest) is never translated: scripts parse it.
Import this module only where translated text is produced: ``ospp /dstatus`` must not pay for
gettext.
"""

from __future__ import annotations

import ast
import functools
import gettext
import io
import os
from collections.abc import Mapping
from pathlib import Path

LANGUAGES = ("en", "sv")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "ospp"


def choose(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """``--lang`` if given, else the first of LANGUAGE, LC_ALL, LC_MESSAGES, LANG that is set."""
    if explicit:
        return explicit
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            first = value.split(":")[0].lower()
            return "sv" if first.startswith("sv") else "en"
    return "en"


def parse_po(text: str) -> dict[str, str]:
    """The translated, non-fuzzy entries of a ``.po`` file (the header under ``""``)."""
    entries: dict[str, str] = {}
    msgid: list[str] = []
    msgstr: list[str] = []
    target: list[str] | None = None
    fuzzy = False

    def flush() -> None:
        nonlocal fuzzy
        if target is not None and not fuzzy:
            key, value = "".join(msgid), "".join(msgstr)
            if value:
                entries[key] = value
        msgid.clear()
        msgstr.clear()
        fuzzy = False

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#,") and "fuzzy" in line:
            flush()
            target = None
            fuzzy = True
        elif line.startswith("msgid "):
            if msgstr:
                flush()
            target = msgid
            msgid.append(ast.literal_eval(line[6:]))
        elif line.startswith("msgstr "):
            target = msgstr
            msgstr.append(ast.literal_eval(line[7:]))
        elif line.startswith('"') and target is not None:
            target.append(ast.literal_eval(line))
    flush()
    return entries


def compile_mo(entries: Mapping[str, str]) -> bytes:
    """GNU ``.mo`` bytes for ``entries`` (what msgfmt writes)."""
    import struct  # not at the top: /dstatus imports this module for English reminders

    keys = sorted(entries)
    ids = [k.encode("utf-8") for k in keys]
    strs = [entries[k].encode("utf-8") for k in keys]
    start = 7 * 4 + 16 * len(keys)
    offsets, blob = [], b""
    for data in ids:
        offsets.append((len(data), start + len(blob)))
        blob += data + b"\0"
    str_offsets = []
    for data in strs:
        str_offsets.append((len(data), start + len(blob)))
        blob += data + b"\0"
    magic = bytes.fromhex("de120495")  # the GNU .mo magic number, little-endian
    header = magic + struct.pack("<6I", 0, len(keys), 28, 28 + 8 * len(keys), 0, 0)
    table = b"".join(struct.pack("<2I", *o) for o in offsets + str_offsets)
    return header + table + blob


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    po = po_path(lang)
    if lang == "en" or not po.exists():
        return gettext.NullTranslations()
    mo = po.with_suffix(".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as fh:
            return gettext.GNUTranslations(fh)
    entries = parse_po(po.read_text(encoding="utf-8"))
    return gettext.GNUTranslations(io.BytesIO(compile_mo(entries)))


class Text:
    """``_("Group {n} of {total}", n=1, total=20)``: the message in ``lang``, formatted."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._t = translations(lang)

    def __call__(self, msgid: str, /, **values: object) -> str:
        text = self._t.gettext(msgid)
        return text.format(**values) if values else text


# Modules whose ``_("...")`` calls are translated (the completeness test reads this list).
TRANSLATED_MODULES = ("dialogue.py", "wizard.py", "phone_console.py", "reminders.py")


def extract(paths: list[Path]) -> list[str]:
    """Every literal message id passed to ``_(...)`` in ``paths``, in order of appearance."""
    found: list[str] = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "_"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value not in found
            ):
                found.append(node.args[0].value)
    return found


def message_ids() -> list[str]:
    """All message ids: the dialogues' and the licensing codes' descriptions (/ddescr)."""
    from ospp.core.errors import DESCRIPTIONS

    here = Path(__file__).resolve().parent
    ids = extract([here / name for name in TRANSLATED_MODULES])
    return ids + [d for d in DESCRIPTIONS.values() if d not in ids]


def write_template(path: Path) -> None:
    """Write the ``.pot`` template (``python -m ospp.cli.i18n``)."""

    def quote(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    out = ['msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"', ""]
    for mid in message_ids():
        out += [f"msgid {quote(mid)}", 'msgstr ""', ""]
    path.write_text("\n".join(out), encoding="utf-8")


if __name__ == "__main__":
    import sys

    write_template(Path(sys.argv[1]) if len(sys.argv) > 1 else LOCALE_DIR / f"{DOMAIN}.pot")
