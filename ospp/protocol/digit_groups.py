"""Digits read over the phone in groups, each group ending in a Damm check digit, which catches
every single mistyped digit and every swap of two adjacent digits in the group: adding the
check digits, reading a whole ID back (checked group by group), and :class:`GroupEntry`, the
digits typed group by group at a prompt. :mod:`ospp.protocol.phone` says what the installation
and confirmation IDs hold.
"""

from __future__ import annotations

from ospp.core.errors import (
    E_BAD_FORMAT,
    E_CHECK_DIGIT,
    E_CID_LENGTH,
    N_,
    LicensingError,
)

_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm(digits: str) -> int:
    """The Damm check digit of ``digits``; 0 for digits that end in their own."""
    interim = 0
    for d in digits:
        interim = _DAMM[interim][ord(d) - 48]
    return interim


def with_check_digits(data: str, per_group: int) -> list[str]:
    """``data`` cut into groups of ``per_group`` digits, each with its check digit added."""
    chunks = [data[i : i + per_group] for i in range(0, len(data), per_group)]
    return [chunk + str(damm(chunk)) for chunk in chunks]


def digits_only(text: str, what: str) -> str:
    """The digits of an ID as typed, spaces and dashes left out; anything else is refused."""
    compact = "".join(text.split()).replace("-", "")
    if compact and not (compact.isdigit() and compact.isascii()):  # empty: its length says
        bad = next((c for c in compact if not ("0" <= c <= "9")), "")
        raise LicensingError(
            E_BAD_FORMAT,
            N_(
                "the {what} may hold only digits, spaces and dashes; found {bad!r}",
                what=what,
                bad=bad,
            ),
        )
    return compact


def check_group(group: str, index: int, what: str, size: int) -> None:
    """Raise 0xC004F04D naming group ``index`` (1-based) if its check digit is wrong."""
    if len(group) != size or not (group.isascii() and group.isdigit()):
        raise LicensingError(
            E_CID_LENGTH if what == "confirmation ID" else E_BAD_FORMAT,
            N_(
                "group {index} of the {what} must be {size} digits, not {group!r}",
                index=index,
                what=what,
                size=size,
                group=group,
            ),
        )
    if damm(group) != 0:
        raise LicensingError(
            E_CHECK_DIGIT,
            N_(
                "group {index} of the {what} is wrong (its check digit does not match)",
                index=index,
                what=what,
            ),
            N_("Read group {index} again, digit by digit.", index=index),
        )


def split_checked(text: str, groups: int, per_group: int, what: str, length_code: int) -> str:
    """The data digits of a whole ID typed as ``groups`` groups of ``per_group`` digits and a
    check digit, each group checked; the wrong length raises ``length_code``."""
    compact = digits_only(text, what)
    size = per_group + 1
    if len(compact) != groups * size:
        typed = text.replace("-", " ").split()
        if len(typed) == groups:  # typed group by group: name the group that is not whole
            for i, group in enumerate(typed):
                if len(group) != size:
                    check_group(group, i + 1, what, size)
        raise LicensingError(
            length_code,
            N_(
                "the {what} has {count} digits; it must have {length} ({groups} groups of {size})",
                what=what,
                count=len(compact),
                length=groups * size,
                groups=groups,
                size=size,
            ),
        )
    data = []
    for i in range(groups):
        group = compact[i * size : (i + 1) * size]
        check_group(group, i + 1, what, size)
        data.append(group[:per_group])
    return "".join(data)


def format_groups(text: str, size: int) -> str:
    """Digits as groups separated by dashes, for reading aloud."""
    return "-".join(text[i : i + size] for i in range(0, len(text), size))


class TooManyGroups(LicensingError):
    """A line typed into a :class:`GroupEntry` holds more digits than the ID has left."""


class GroupEntry:
    """Digits typed group by group, as a person reads them over the phone.

    Each :meth:`feed` takes whatever was typed at one prompt: one group, several, or a whole
    pasted ID (spaces and dashes ignored). Groups are checked as they come; good ones are kept,
    and the first wrong one is reported (the rest of that line is dropped), so only a wrong
    group is asked for again. Used by ``actcid --interactive``, the wizard and the operator's
    console alike.
    """

    def __init__(self, groups: int, per_group: int, what: str) -> None:
        self.total = groups
        self.size = per_group + 1
        self.what = what
        self.groups: list[str] = []

    @property
    def done(self) -> bool:
        return len(self.groups) >= self.total

    @property
    def index(self) -> int:
        """The 1-based number of the group asked for next."""
        return len(self.groups) + 1

    def feed(self, typed: str) -> LicensingError | None:
        """Take one line; returns the error for a wrong group (None if all were good)."""
        compact = "".join(typed.split()).replace("-", "")
        if not compact:
            return LicensingError(
                E_CID_LENGTH if self.what == "confirmation ID" else E_BAD_FORMAT,
                N_("group {index} of the {what} is empty", index=self.index, what=self.what),
            )
        chunks = [compact[i : i + self.size] for i in range(0, len(compact), self.size)]
        left = self.total - len(self.groups)
        # a character that is not a digit within the ID's length (an en dash from a mail) is
        # what is wrong there, not the length: the group that holds it is named below
        bad = next((i for i, c in enumerate(compact) if not "0" <= c <= "9"), len(compact))
        if len(chunks) > left and bad >= left * self.size:
            # an extra group, or an ID pasted twice: nothing of it is kept
            return TooManyGroups(
                E_CID_LENGTH if self.what == "confirmation ID" else E_BAD_FORMAT,
                N_(
                    "the {what} has {left} group(s) left from group {index}, and this line "
                    "holds {typed} characters, more than {most}",
                    what=self.what,
                    left=left,
                    index=self.index,
                    typed=len(compact),
                    most=left * self.size,
                ),
                N_("Type the line again without the extra digits."),
            )
        first = self.index
        for chunk in chunks:
            try:
                check_group(chunk, self.index, self.what, self.size)
            except LicensingError as exc:
                return self._short_group(typed, first) or exc
            self.groups.append(chunk)
        return None

    def _short_group(self, typed: str, first: int) -> LicensingError | None:
        """When a line typed with separators went wrong, a group among them left a digit
        short explains it better than the check digit that fails after it: every later digit
        moved. That group is the last part to begin where a group begins, when the digits
        typed are not whole groups; what the line added from it on is dropped (a moved chunk
        may pass its check digit by chance)."""
        parts = typed.replace("-", " ").split()
        if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
            return None
        typed_digits, start, short = 0, 0, ""
        for part in parts:
            if typed_digits % self.size == 0:
                start, short = typed_digits, part
            typed_digits += len(part)
        if typed_digits % self.size == 0 or len(short) >= self.size:
            return None  # whole groups: a wrong digit, not a missing one
        index = first + start // self.size
        del self.groups[index - 1 :]
        try:
            check_group(short, index, self.what, self.size)
        except LicensingError as exc:
            return exc
        return None  # unreachable: the group is short

    def text(self) -> str:
        """The groups so far, dash-separated."""
        return "-".join(self.groups)
