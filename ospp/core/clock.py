"""Time, injectable: the system clock, or a simulated one from ``OSPP_NOW``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ospp.core.errors import UsageError


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class FixedClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


# The times ospp works with: every date it computes (a year of renewals, grace, validity)
# stays within datetime's range, and every time stored in ISO form reads back the same.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)


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
            f"{what}={text!r} is not an ISO 8601 time",
            "Use a form such as 2026-06-01T09:00:00Z or 2026-06-01.",
        ) from None
    except OverflowError:  # the zone offset moves it outside the years datetime can hold
        raise _out_of_range(text, what) from None
    if not EARLIEST <= value <= LATEST:
        raise _out_of_range(text, what)
    return value


def _out_of_range(text: str, what: str) -> UsageError:
    return UsageError(
        f"{what}={text!r} is outside the times ospp works with ({iso(EARLIEST)} to {iso(LATEST)})",
        "Use a time between those; ospp computes dates a year or more ahead of it.",
    )


def clock_from_env(environ: Mapping[str, str] = os.environ) -> Clock:
    text = environ.get("OSPP_NOW")
    return FixedClock(parse_time(text)) if text else SystemClock()


def iso(value: datetime) -> str:
    """The ISO 8601 form used in the store and in --json: UTC, seconds, trailing Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
