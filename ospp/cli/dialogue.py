"""A question-and-answer dialogue on a terminal or on piped input, in the chosen language.

Shared by ``ospp wizard`` and ``ospp center phone``. The dialogue goes to stdout, or to stderr
when ``--json`` keeps stdout for the one JSON object. The end of input cancels; Ctrl+C raises
KeyboardInterrupt as usual (the command says what was left unchanged and exits 130).

The error that ends a dialogue is printed in the dialogue's language, framed as every command's
error block (:meth:`Dialogue.ending`); ordinary commands keep their English ospp.vbs block.
"""

from __future__ import annotations

import sys
from typing import TextIO

import click

from ospp.cli.base import DASHES, Result, tolerant_input
from ospp.cli.i18n import Text
from ospp.core.errors import E_CHECK_DIGIT, N_, Cancelled, OsppError, hex_code
from ospp.core.printable import escaped
from ospp.protocol.digit_groups import GroupEntry, TooManyGroups

LANG_OPTION = click.option(
    "--lang",
    type=click.Choice(["sv", "en"]),
    help="Language of the dialogue (default: from LANGUAGE, LC_ALL, LC_MESSAGES or LANG).",
)


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes: a message that came from a server
    never reaches the terminal raw."""
    return escaped(text)


class Dialogue:
    def __init__(self, text: Text, to_stderr: bool, stdin: TextIO | None = None) -> None:
        self._ = text
        self.err = to_stderr
        self.stdin = tolerant_input(stdin or sys.stdin)

    def say(self, line: str = "") -> None:
        click.echo(line, err=self.err)

    def ask(self, prompt: str) -> str:
        """One line typed after ``prompt``; the end of input cancels."""
        click.echo(f"{prompt} ", nl=False, err=self.err)
        line = self.stdin.readline()
        if not line:
            self.say()
            raise Cancelled(interrupted=False)
        if not self.stdin.isatty():
            click.echo(
                printable(line.rstrip("\r\n")), err=self.err
            )  # a readable transcript of piped input
        return line.strip()

    def choose(self, prompt: str, count: int) -> int:
        """A number from 1 to ``count``, asked until one is typed."""
        _ = self._
        while True:
            typed = self.ask(prompt)
            if typed.isascii() and typed.isdigit() and len(typed) < 10 and 1 <= int(typed) <= count:
                return int(typed)
            self.say(_("Type a number from 1 to {count}.", count=count))

    def yes(self, prompt: str) -> bool:
        _ = self._
        yes_words = {"y", "yes", _("y"), _("yes")}
        no_words = {"n", "no", _("n"), _("no")}
        while True:
            typed = self.ask(f"{prompt} [{_('y')}/{_('n')}]").lower()
            if typed in yes_words:
                return True
            if typed in no_words:
                return False
            self.say(_("Answer {yes} or {no}.", yes=_("y"), no=_("n")))

    def groups(self, entry: GroupEntry, label: str) -> str:
        """Digits group by group; a line may hold one group, several or the whole ID. Only a
        wrong group is asked for again."""
        _ = self._
        while not entry.done:
            typed = self.ask(
                _("{label}, group {n} of {total}:", label=label, n=entry.index, total=entry.total)
            )
            if not typed:
                continue
            wrong = entry.feed(typed)
            if wrong is not None:
                self.say(
                    "  "
                    + _(
                        "Group {n} is wrong ({code}): {why}. Type it again.",
                        n=entry.index,
                        code=hex_code(wrong.code),
                        why=self.problem(wrong, entry.size, typed),
                    )
                )
        return entry.text()

    def problem(self, exc: OsppError, size: int, typed: str = "") -> str:
        """A short translated reason for a group-entry failure (``typed``: the line)."""
        _ = self._
        if exc.code == E_CHECK_DIGIT:
            return _("its check digit does not match")
        if isinstance(exc, TooManyGroups):
            return _("the line holds more digits than the ID has left")
        # another script's digits (Arabic-Indic, fullwidth) count as digits to the eye
        bad = [c for c in typed if not ((c.isascii() and c.isdigit()) or c == "-" or c.isspace())]
        if bad:
            return _("{char} is not a digit from 0 to 9", char=repr(bad[0]))
        return _("a group is {size} digits", size=size)

    def cancelled(self, interrupted: bool, recorded: bool = False) -> Cancelled:
        """Say that nothing was changed (``recorded``: but for a failed activation attempt in
        the history), and return the error that ends the command."""
        _ = self._
        self.say()
        if recorded:
            self.say(
                _(
                    "Cancelled. The product is not activated; only the failed activation "
                    "was recorded (ospp /dhistoryacterr)."
                )
            )
        else:
            self.say(_("Cancelled. Nothing was changed."))
        return Cancelled(
            interrupted, N_("only the failed activation was recorded") if recorded else None
        )

    def error_lines(self, exc: OsppError) -> list[str]:
        """The error block of ordinary commands (ERROR CODE, DESCRIPTION, DETAIL, HINT), in the
        dialogue's language: the same lines, byte for byte, in English."""
        _ = self._
        lines = [_("ERROR CODE: {code}", code=hex_code(exc.code))]
        if exc.description:
            lines.append(_("ERROR DESCRIPTION: {description}", description=_(exc.description)))
        lines.append(_("ERROR DETAIL: {detail}", detail=_.message(exc.message)))
        if exc.hint:
            lines.append(_("HINT: {hint}", hint=_.message(exc.hint)))
        return lines

    def ending(self, exc: OsppError) -> Result:
        """The result of a dialogue that ends with ``exc``: its error block in the dialogue's
        language (the JSON error, for scripts, stays English)."""
        _ = self._
        frame = [
            ("---" + _("Processing")).ljust(len(DASHES), "-"),
            DASHES,
            *self.error_lines(exc),
            DASHES,
            ("---" + _("Exiting")).ljust(len(DASHES), "-"),
        ]
        return Result(frame, banners=False, failed=exc)
