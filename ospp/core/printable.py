"""Text from outside, made safe to show on a terminal.

A KMS host's error message, a client's CMID or workstation name, a licence status a client
claims: any of it may carry escape sequences that move the cursor, rewrite the window title,
hide text or reverse it (bidi overrides). :func:`printable` shows such characters as visible
escapes (``\\x1b``, ``\\u202e``) and leaves every other character alone. JSON output needs
nothing more: ``json.dumps`` escapes them already.
"""

from __future__ import annotations

import re

# Anything outside printable ASCII (tab aside) is looked at more closely; plain text passes fast.
_SUSPECT = re.compile(r"[^\t\x20-\x7e]")
# Control (C0, DEL, C1), format (bidi, zero-width, BOM), surrogate, line and paragraph separator.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with control, format and separator characters escaped, the tab aside.
    Newlines are escaped too: one value stays one line."""
    if not _SUSPECT.search(text):
        return text
    import unicodedata

    def fix(match: re.Match[str]) -> str:
        char = match.group()
        if unicodedata.category(char) not in _UNSAFE:
            return char
        return _escape(char)

    return _SUSPECT.sub(fix, text)


def escaped(text: str) -> str:
    """``text`` with every character ``str.isprintable()`` refuses (tab and spaces other than
    the ASCII one too) shown as one escape each, in the form :func:`printable` uses."""
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


# What makes a spreadsheet take a CSV cell for a formula (OWASP, "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """Outside text for a CSV cell: escaped as by :func:`printable` (a CSV may be printed on
    a terminal), and never taken for a formula when the file is opened in a spreadsheet: a
    cell that would start one gets a leading apostrophe, which shows it as text."""
    shown = printable(text)
    return "'" + shown if shown.startswith(_FORMULA_START) else shown
