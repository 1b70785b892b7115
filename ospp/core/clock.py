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


def parse_time(text: str, what: str = "OSPP_NOW") -> datetime:
    """Parse ISO 8601; a time without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{what}={text!r} is not an ISO 8601 time",
            "Use a form such as 2026-06-01T09:00:00Z or 2026-06-01.",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def clock_from_env(environ: Mapping[str, str] = os.environ) -> Clock:
    text = environ.get("OSPP_NOW")
    return FixedClock(parse_time(text)) if text else SystemClock()


def iso(value: datetime) -> str:
    """The ISO 8601 form used in the store and in --json: UTC, seconds, trailing Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
