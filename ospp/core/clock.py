"""Time, injectable: the system clock, the shared lab clock, or a fixed ``OSPP_NOW``.

Precedence (``ospp clock show`` prints it): ``OSPP_NOW`` (fixed for the process, or an offset
such as ``+7d`` from the lab clock), then the lab clock, then real time.

The lab clock is one small JSON file (``OSPP_CLOCK_FILE``, default ``clock.json`` in
``OSPP_HOME`` or the data directory) that every role on a machine reads: clients, KMS hosts
and the authority see the same simulated time. It holds an instant and the real time it was
set at, and runs forward at real speed from there unless frozen. A :class:`LabClock` stats the
file on each read and parses it again only when it changed, so a running server follows
``ospp clock advance`` at its next request without a restart and at the cost of one stat.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ospp.core.errors import E_ACCESS_DENIED, E_INVALID_DATA, N_, StoreError, UsageError
from ospp.core.paths import StrPath, ospp_home, parent, pathlib_form
from ospp.core.record import Record

CLOCK_FILE = "clock.json"
# The times ospp works with: every date it computes (a year of renewals, grace, validity)
# stays within datetime's range, and every time stored in ISO form reads back the same.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = r"^([+-]?)([0-9]+)([smhdw])$"  # compiled on first use: not at every start


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock(Record):
    at: datetime

    def now(self) -> datetime:
        return self.at


def _in_range(value: datetime, text: str, what: str) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise _out_of_range(text, what)
    return value


def _out_of_range(text: str, what: str) -> UsageError:
    return UsageError(
        N_(
            "{what}={text!r} is outside the times ospp works with ({earliest} to {latest})",
            what=what,
            text=text,
            earliest=iso(EARLIEST),
            latest=iso(LATEST),
        ),
        N_("Use a time between those; ospp computes dates a year or more ahead of it."),
    )


def parse_time(text: str, what: str = "OSPP_NOW") -> datetime:
    """Parse ISO 8601; a time without a zone is taken as UTC. Raises UsageError for text that
    is not a time, and for times outside :data:`EARLIEST`..:data:`LATEST`."""
    try:
        value = datetime.fromisoformat(text.strip())
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
    except ValueError:
        raise UsageError(
            N_("{what}={text!r} is not an ISO 8601 time", what=what, text=text),
            N_("Use a form such as 2026-06-01T09:00:00Z or 2026-06-01."),
        ) from None
    except OverflowError:  # the zone offset moves it outside the years datetime can hold
        raise _out_of_range(text, what) from None
    return _in_range(value, text, what)


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """``7d``, ``3h``, ``90m``, ``30s``, ``2w``; a leading ``-`` goes back in time."""
    found = re.match(_DURATION, text.strip())
    if not found:
        raise UsageError(
            f"{what} {text!r} is not a duration",
            "Use a whole number and one unit: s, m, h, d or w (7d, 3h, 90m, -2h).",
        )
    sign, amount, unit = found.groups()
    too_long = UsageError(
        f"{what} {text!r} is longer than any time ospp simulates",
        "Stay between 1970-01-01 and 9998-12-31.",
    )
    if len(amount.lstrip("0")) > 12:  # more seconds than 10,000 years hold, in any unit
        raise too_long
    seconds = int(amount) * _UNITS[unit]
    try:
        return timedelta(seconds=-seconds if sign == "-" else seconds)
    except OverflowError:
        raise too_long from None


def shifted(start: datetime, by: timedelta, what: str) -> datetime:
    """``start + by``, refused (exit 2) when it leaves EARLIEST..LATEST."""
    try:
        value = start + by
    except OverflowError:
        value = None
    if value is None or not EARLIEST <= value <= LATEST:
        said = f"-{-by}" if by < timedelta(0) else str(by)  # not "-1 day, 23:59:59"
        raise UsageError(
            f"{what} would move to outside the times ospp simulates ({iso(start)} by {said})",
            "Stay between 1970-01-01 and 9998-12-31.",
        )
    return value


def clock_file(environ: Mapping[str, str] = os.environ) -> str:
    """Where the lab clock lives: ``OSPP_CLOCK_FILE``, else in ``OSPP_HOME`` or the data dir."""
    value = environ.get("OSPP_CLOCK_FILE")
    if value:
        return pathlib_form(value)
    return os.path.join(ospp_home(environ), CLOCK_FILE)


class LabState(Record):
    """What the clock file says: simulated ``at`` as of real time ``real``; frozen or running."""

    at: datetime
    real: datetime
    frozen: bool

    def now(self, real_now: datetime) -> datetime:
        """The simulated time at ``real_now``. A running clock stops at the ends of the times
        ospp works with (set to LATEST, it stays there), as real time moves on or back."""
        if self.frozen:
            return self.at
        try:
            value = self.at + (real_now - self.real)
        except OverflowError:
            return LATEST if real_now > self.real else EARLIEST
        return min(max(value, EARLIEST), LATEST)

    def to_text(self) -> str:
        import json

        return json.dumps(
            {
                "version": 1,
                "at": self.at.isoformat(),
                "set_at_real_time": self.real.isoformat(),
                "frozen": self.frozen,
            },
            indent=2,
        )


MAX_CLOCK_FILE = 4096  # bytes; ospp writes about 130


def read_state(path: StrPath) -> LabState | None:
    """The lab clock in ``path``; None when there is none. A damaged file is reported, and so
    is a symbolic link, or anything but a regular file (a FIFO would never end)."""
    import stat

    try:
        _refuse_special(path)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise StoreError(
                E_INVALID_DATA,
                f"the lab clock file {path} is {what}; ospp reads only a file it wrote there",
                "It was left as it is. Remove it ('ospp clock reset' goes back to real time; "
                "it removes a link, not what the link points to) or point OSPP_CLOCK_FILE "
                "elsewhere.",
            )
        with open(path, "rb") as f:
            raw = f.read(MAX_CLOCK_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(
            E_INVALID_DATA, f"the lab clock file {path} cannot be read: {exc.strerror or exc}"
        ) from exc
    from ospp.core.canonical import load_json  # imports json: only with a lab clock file

    try:
        if len(raw) > MAX_CLOCK_FILE:
            raise ValueError(f"it is larger than {MAX_CLOCK_FILE} bytes")
        data = load_json(raw.decode("utf-8"))  # UnicodeDecodeError is a ValueError
        at, real = _utc(data["at"]), _utc(data["set_at_real_time"])
        frozen = data["frozen"]
        if not isinstance(frozen, bool) or data.get("version") != 1:
            raise ValueError("unexpected version or 'frozen' value")
        if not (EARLIEST <= at <= LATEST and EARLIEST <= real <= LATEST):
            raise ValueError("a time outside the years ospp works with")
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise StoreError(
            E_INVALID_DATA,
            f"the lab clock file {path} is damaged: {exc}",
            "It was left as it is. 'ospp clock reset' removes it (back to real time); "
            "'ospp clock set TIME' then starts a new one.",
        ) from exc
    return LabState(at, real, frozen)


def _utc(text: str) -> datetime:
    """A time in the clock file; one without a zone (edited by hand) is UTC, as for 'clock
    set', never the local time of whichever process reads it: every role sees one time."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class LabClock:
    """Time from the lab clock file (real time when there is none), plus a fixed offset.

    The file is parsed again only when its size, mtime or inode change, so reading the time
    costs one ``stat``. A KMS host reads it from two threads (serving, pruning): what was
    read is kept as one pair, replaced whole.
    """

    def __init__(self, path: StrPath, offset: timedelta = timedelta(0)) -> None:
        self.path = path
        self.offset = offset
        self._read: tuple[tuple[int, int, int] | None, LabState | None] = (None, None)

    def state(self) -> LabState | None:
        try:
            st = os.lstat(self.path)  # a link in its place is refused, not followed
        except FileNotFoundError:
            self._read = (None, None)
            return None
        except OSError:
            return self._read[1]
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        before, state = self._read
        if seen != before:
            state = read_state(self.path)
            self._read = (seen, state)
        return state

    def now(self) -> datetime:
        real = datetime.now(UTC)
        state = self.state()
        base = state.now(real) if state else real
        return shifted(base, self.offset, "OSPP_NOW's offset") if self.offset else base


def clock_from_env(environ: Mapping[str, str] = os.environ) -> Clock:
    """``OSPP_NOW`` (a fixed time, or ``+7d``/``-2h`` from the lab clock), else the lab clock."""
    text = environ.get("OSPP_NOW", "").strip()
    if text and text[0] not in "+-":
        return FixedClock(parse_time(text))
    offset = parse_duration(text, "OSPP_NOW offset") if text else timedelta(0)
    return LabClock(clock_file(environ), offset)


# -- changing the lab clock ('ospp clock ...') ----------------------------------------------------


def _unwritable(path: StrPath, exc: OSError) -> StoreError:
    return StoreError(
        E_ACCESS_DENIED,
        f"the lab clock file {path} cannot be written: {exc.strerror or exc}",
        "Check that its directory is writable, or set OSPP_CLOCK_FILE.",
    )


def _write(path: StrPath, state: LabState) -> LabState:
    from ospp.core.files import write_atomic  # changes only: not on every command

    try:
        write_atomic(path, state.to_text() + "\n")
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    return state


@contextlib.contextmanager
def _changing(path: StrPath) -> Iterator[None]:
    """One change of the lab clock at a time: each ``clock advance`` starts from the time
    the one before it wrote, so concurrent changes are never lost. The lock is a file beside
    the clock file (``clock.json.lock``), made only once the clock file is known to be one
    ospp may replace or remove."""
    _refuse_special(path)
    try:
        os.makedirs(parent(path), exist_ok=True)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    from ospp.core.files import locked

    with locked(os.fspath(path) + ".lock"):
        yield


def _refuse_special(path: StrPath) -> None:
    """A device or a directory in place of the clock file is refused by every clock command,
    before a lock file is made beside it: 'clock reset' would remove a device
    (``OSPP_CLOCK_FILE=/dev/null`` run by root). A FIFO, a socket or a link, which hold
    nothing, are refused when read and removed by 'clock reset'."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # not there (yet), or not to be looked at: each command says so in its way
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a device"
        raise StoreError(
            E_INVALID_DATA,
            f"the lab clock file {path} is {what}, not a regular file; ospp reads and "
            "replaces only a file it wrote there, and never removes a device or a directory",
            "It was left as it is. Point OSPP_CLOCK_FILE at a file ospp may write, or at a "
            "name not taken yet.",
        )


def lab_set(path: StrPath, at: datetime) -> LabState:
    """Set the lab clock to ``at`` (it keeps running or stays frozen as it was)."""
    with _changing(path):
        current = read_state(path)
        return _write(path, LabState(at, datetime.now(UTC), bool(current and current.frozen)))


def lab_advance(path: StrPath, by: timedelta) -> LabState:
    """Move the lab clock by ``by`` (from real time when there is no lab clock yet)."""
    with _changing(path):
        current = read_state(path)
        real = datetime.now(UTC)
        start = current.now(real) if current else real
        frozen = bool(current and current.frozen)
        return _write(path, LabState(shifted(start, by, "the lab clock"), real, frozen))


def lab_freeze(path: StrPath, frozen: bool) -> LabState:
    """Stop the lab clock where it is (``frozen``), or let it run on at real speed."""
    with _changing(path):
        current = read_state(path)
        real = datetime.now(UTC)
        return _write(path, LabState(current.now(real) if current else real, real, frozen))


def lab_reset(path: StrPath) -> bool:
    """Remove the lab clock (back to real time); False when there was none."""
    try:
        os.lstat(path)  # no clock file: no lock file made for nothing
    except FileNotFoundError:
        return False
    except OSError as exc:  # a name too long, a directory that may not be entered
        raise _unremovable(path, exc) from exc
    with _changing(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _unremovable(path, exc) from exc
    return True


def _unremovable(path: StrPath, exc: OSError) -> StoreError:
    return StoreError(
        E_ACCESS_DENIED,
        f"the lab clock file {path} cannot be removed: {exc.strerror or exc}",
        "Check OSPP_CLOCK_FILE, and that the clock file's directory is writable.",
    )


def iso(value: datetime) -> str:
    """The ISO 8601 form used in the store and in --json: UTC, seconds, trailing Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stored_time(text: object, ahead: timedelta = timedelta(0)) -> datetime | None:
    """A time read back from a store (what :func:`iso` wrote): ISO 8601 text with its zone,
    within the times ospp works with, or up to ``ahead`` after them for a time computed
    ahead of one (a KMS activation's expiry); None for none. Raises ValueError for anything
    else."""
    if not text:
        return None
    if not isinstance(text, str):
        raise ValueError(f"a time stored as {type(text).__name__}, not text")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"the time {text!r} has no time zone")
    if not EARLIEST <= value <= LATEST + ahead:
        raise ValueError(f"the time {text!r} is outside the times ospp works with")
    return value
