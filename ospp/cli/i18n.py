"""Translated text for the dialogues (wizard, operator console, notifications): gettext.

The catalogues are ``.po`` files in ``ospp/cli/locale/<lang>/LC_MESSAGES/ospp.po``. Building
the package (``setup.py``) compiles each into an ``ospp.mo`` beside it, which records the
checksum of the ``.po`` it came from; a ``.mo`` is used only when that matches. Without one (a
source checkout) or with a stale one, the ``.po`` is compiled in memory on first use (a few
milliseconds, only in commands that print translated text). English is the message ids.

Errors raised below the CLI stay English there; those a dialogue may show carry their message id
(``ospp.core.errors.N_``), and :meth:`Text.message` words them in the dialogue's language.

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
from typing import TYPE_CHECKING

from ospp.core.errors import Message

if TYPE_CHECKING:
    from pathlib import Path

LANGUAGES = ("en", "sv")
LOCALE_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "locale")
DOMAIN = "ospp"


def choose(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """``--lang`` if given, else from the environment as gettext reads it: LANGUAGE, a list of
    languages in order of preference (the first one ospp has; English if none), unless the
    locale (the first of LC_ALL, LC_MESSAGES, LANG that is set) is C or POSIX, which scripts
    set to get English, or none is set (the C locale, as under cron or ``env -i``; not on
    Windows, which sets none of them); else that locale."""
    if explicit:
        return explicit
    locale = next((environ[n] for n in ("LC_ALL", "LC_MESSAGES", "LANG") if environ.get(n)), "")
    wanted = environ.get("LANGUAGE", "")
    if not wanted or locale in ("C", "POSIX") or (not locale and os.name != "nt"):
        wanted = locale
    for entry in wanted.split(":"):
        name = entry.lower()
        if name.startswith("sv"):
            return "sv"
        if name.startswith("en") or name in ("c", "posix"):
            return "en"
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


SOURCE_HEADER = "X-Source-CRC32"  # in a .mo: the checksum of the .po it was compiled from


def source_sum(po_text: str) -> str:
    """The checksum that ties a ``.mo`` to its ``.po`` (CRC-32: it tells an edited ``.po``
    apart, and zlib is loaded already where ``/dstatus`` words a reminder; hashlib is not)."""
    import zlib

    return f"{zlib.crc32(po_text.encode('utf-8')):08x}"


def compiled(po_text: str) -> bytes:
    """The ``.mo`` bytes for a ``.po`` file's text, with the checksum of that text in its header
    (what the build writes beside the ``.po``)."""
    entries = parse_po(po_text)
    entries[""] = entries.get("", "") + f"{SOURCE_HEADER}: {source_sum(po_text)}\n"
    return compile_mo(entries)


def po_path(lang: str) -> str:
    return os.path.join(LOCALE_DIR, lang, "LC_MESSAGES", f"{DOMAIN}.po")


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    po = po_path(lang)
    if lang == "en" or not os.path.exists(po):
        return gettext.NullTranslations()
    with open(po, encoding="utf-8") as f:
        text = f.read()
    mo = os.path.splitext(po)[0] + ".mo"
    if os.path.exists(mo):
        with open(mo, "rb") as fh:
            built = gettext.GNUTranslations(fh)
        if built.info().get(SOURCE_HEADER.lower()) == source_sum(text):
            return built
    return gettext.GNUTranslations(io.BytesIO(compiled(text)))


class Text:
    """``_("Group {n} of {total}", n=1, total=20)``: the message in ``lang``, formatted."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._t = translations(lang)

    def __call__(self, msgid: str, /, **values: object) -> str:
        text = self._t.gettext(msgid)
        return text.format(**values) if values else text

    def message(self, text: str) -> str:
        """A message or hint from a lower layer in this language: one marked with ``N_`` (and
        the marked values inside it) is translated, any other text is returned as it is."""
        if not isinstance(text, Message):
            return text
        values = {k: self.message(v) if isinstance(v, str) else v for k, v in text.params.items()}
        return self(text.msgid, **values) if values else self(text.msgid)


# Modules whose ``_("...")`` calls are translated (the completeness test reads this list).
TRANSLATED_MODULES = ("dialogue.py", "wizard.py", "phone_console.py", "reminders.py")


def extract(paths: list[Path], marker: str = "_") -> list[str]:
    """Every literal message id passed to ``marker(...)`` (``_`` or ``N_``) in ``paths``, in
    order of appearance."""
    found: list[str] = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == marker
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value not in found
            ):
                found.append(node.args[0].value)
    return found


def message_ids() -> list[str]:
    """All message ids: the dialogues', the errors marked ``N_`` anywhere in ospp, and the
    licensing codes' descriptions (/ddescr)."""
    from pathlib import Path

    from ospp.core.errors import DESCRIPTIONS

    here = Path(__file__).resolve().parent
    ids = extract([here / name for name in TRANSLATED_MODULES])
    marked = extract(sorted(here.parent.rglob("*.py")), marker="N_")
    ids += [m for m in marked if m not in ids]
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
    from pathlib import Path

    write_template(
        Path(sys.argv[1] if len(sys.argv) > 1 else os.path.join(LOCALE_DIR, f"{DOMAIN}.pot"))
    )
