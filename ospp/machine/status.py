"""Licence state: what /dstatus reports for one licence at a given time.

States follow the Software Licensing Service: OOB_GRACE for 30 days after install (or a rearm),
with notifications from day 25; NOTIFICATIONS when the grace runs out (0xC004F009); LICENSED once
activated; OOT_GRACE for 30 days when a KMS activation lapses (after 180 days without renewal) or
the hardware drifts beyond tolerance; then NOTIFICATIONS again.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from datetime import datetime, timedelta

from ospp.core.catalog import Channel
from ospp.core.errors import (
    E_GRACE_EXPIRED,
    E_KEY_NOT_AVAILABLE,
    I_KMS_LICENSED,
    I_OOB,
    I_OOT,
)
from ospp.core.record import Record
from ospp.machine.store import Licence

GRACE = timedelta(days=30)
NOTIFY_AFTER = timedelta(days=25)
KMS_VALIDITY = timedelta(days=180)
OOT_GRACE = timedelta(days=30)

UNLICENSED = "UNLICENSED"
LICENSED = "LICENSED"
OOB_GRACE = "OOB_GRACE"
OOT_GRACE_LABEL = "OOT_GRACE"
NOTIFICATIONS = "NOTIFICATIONS"


class Problem(Record):
    """Why a stored activation no longer counts (tampered licence, hardware drift, ...)."""

    code: int
    detail: str
    since: datetime | None = None  # start of an out-of-tolerance grace, when one applies


# Checks a stored activation; returns None when it holds. Supplied by the caller so that
# reading status needs no cryptography unless there is a signature to check.
Checker = Callable[[Licence], Problem | None]


class LicenceStatus(Record):
    licence: Licence
    status: str
    code: int | None  # the ERROR CODE line (None: no line)
    expires_at: datetime | None  # end of grace or of activation validity
    remaining_minutes: int | None
    notifications: bool  # the user is being nagged (day 25 of grace onwards)
    detail: str | None  # why, in words, when something is wrong

    @property
    def product_id(self) -> str:
        """A PRODUCT ID in the real shape (00339-10000-00000-AA718), stable per SKU and key."""
        lic = self.licence
        seed = f"{lic.sku.sku_id}|{lic.product_key or ''}".encode()
        # Two CRC-32s make 64 stable bits; a display id needs no cryptographic hash, and
        # hashlib (OpenSSL) would add milliseconds to every /dstatus. binascii's CRC-32 is
        # zlib's, without loading libz.
        n = binascii.crc32(seed) << 32 | binascii.crc32(seed[::-1])
        return (
            f"{n % 100000:05d}-{n // 10**5 % 100000:05d}-"
            f"{n // 10**10 % 100000:05d}-AA{n // 10**15 % 1000:03d}"
        )

    @property
    def remaining_days(self) -> int | None:
        return None if self.remaining_minutes is None else self.remaining_minutes // 1440


def _minutes(until: datetime, now: datetime, period: timedelta) -> int:
    """Minutes left until ``until``, at most the whole ``period``: with the clock set back
    before the period began (OSPP_NOW, the lab clock), a 30-day grace still shows 30 days."""
    left = min(until - now, period)
    return max(0, int(left.total_seconds() // 60))


def _grace(lic: Licence, now: datetime, problem: Problem | None) -> LicenceStatus:
    end = lic.grace_start + GRACE
    detail = problem.detail if problem else None
    if now < end:
        return LicenceStatus(
            lic,
            OOB_GRACE,
            problem.code if problem else I_OOB,
            end,
            _minutes(end, now, GRACE),
            now >= lic.grace_start + NOTIFY_AFTER,
            detail,
        )
    return LicenceStatus(
        lic,
        NOTIFICATIONS,
        problem.code if problem else E_GRACE_EXPIRED,
        end,
        0,
        True,
        detail or "the grace period has expired",
    )


def evaluate(lic: Licence, now: datetime, check: Checker | None = None) -> LicenceStatus:
    """The state of ``lic`` at ``now``."""
    if lic.product_key is None:
        return LicenceStatus(lic, UNLICENSED, E_KEY_NOT_AVAILABLE, None, None, False, None)
    act = lic.activation
    if not act:
        return _grace(lic, now, None)
    problem = check(lic) if check else None
    if problem is not None and problem.since is None:
        # The activation itself is not valid (tampered, untrusted): as if never activated.
        return _grace(lic, now, problem)
    if lic.sku.channel is Channel.KMS_CLIENT:
        valid_until = datetime.fromisoformat(act["valid_until"])
        if now < valid_until:
            return LicenceStatus(
                lic,
                LICENSED,
                I_KMS_LICENSED,
                valid_until,
                _minutes(valid_until, now, KMS_VALIDITY),
                False,
                None,
            )
        oot_end = valid_until + OOT_GRACE
        if now < oot_end:
            return LicenceStatus(
                lic,
                OOT_GRACE_LABEL,
                I_OOT,
                oot_end,
                _minutes(oot_end, now, OOT_GRACE),
                False,
                "the KMS activation expired without renewal",
            )
        return LicenceStatus(
            lic, NOTIFICATIONS, E_GRACE_EXPIRED, oot_end, 0, True, "the KMS activation expired"
        )
    if problem is not None and problem.since is not None:
        oot_end = problem.since + OOT_GRACE
        if now < oot_end:
            return LicenceStatus(
                lic,
                OOT_GRACE_LABEL,
                problem.code,
                oot_end,
                _minutes(oot_end, now, OOT_GRACE),
                False,
                problem.detail,
            )
        return LicenceStatus(lic, NOTIFICATIONS, problem.code, oot_end, 0, True, problem.detail)
    return LicenceStatus(lic, LICENSED, None, None, None, False, None)
