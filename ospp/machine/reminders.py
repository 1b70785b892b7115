"""What Office would tell the user about activation on the simulated day: reminders and notices.

A keyed product that is not activated asks again the next time an Office program opens. From
day 25 of the grace period a KMS client that never activated shows a notification; once the
grace ends (or a KMS client has reached no host for 180 days and its activation lapsed) the
product says it is not licensed, with every feature still available. The wording is the CLI's
(translated); this module only decides which notice applies.
"""

from __future__ import annotations

from collections.abc import Iterable

from ospp.core.catalog import Channel
from ospp.core.record import Record
from ospp.machine.status import (
    LICENSED,
    NOTIFICATIONS,
    OOB_GRACE,
    OOT_GRACE_LABEL,
    LicenceStatus,
)

PENDING = "pending"  # keyed, not activated, in grace: asked again at the next start
KMS_NOTIFY = "kms-notify"  # a KMS client that never activated, from day 25 of grace
NOT_LICENSED = "not-licensed"  # grace over, or 180 days without a KMS host: all features work
OUT_OF_TOLERANCE = "out-of-tolerance"  # an activation that no longer holds, in its 30-day grace


class Notice(Record):
    product: str
    license_name: str
    kind: str
    days_left: int | None  # whole days of grace left (None: none applies)
    kms_client: bool = False  # activated by a KMS host (/act), not by the wizard

    def to_json(self) -> dict[str, object]:
        return {"product_id": self.product, "kind": self.kind, "grace_days_left": self.days_left}


def notice(st: LicenceStatus) -> Notice | None:
    """The notice for one licence now, or None when it is licensed or has no key."""
    lic = st.licence
    if not lic.product_key or st.status == LICENSED:
        return None
    never = not lic.activation
    kind: str | None = None
    if st.status == OOB_GRACE:
        kind = KMS_NOTIFY if lic.sku.channel is Channel.KMS_CLIENT and st.notifications else PENDING
    elif st.status == OOT_GRACE_LABEL:
        lapsed = lic.sku.channel is Channel.KMS_CLIENT and not never
        kind = NOT_LICENSED if lapsed else OUT_OF_TOLERANCE
    elif st.status == NOTIFICATIONS:
        kind = NOT_LICENSED
    if kind is None:
        return None
    return Notice(
        lic.sku.product.id,
        lic.sku.license_name,
        kind,
        st.remaining_days,
        lic.sku.channel is Channel.KMS_CLIENT,
    )


def notices(statuses: Iterable[LicenceStatus]) -> list[Notice]:
    return [n for n in (notice(st) for st in statuses) if n is not None]
