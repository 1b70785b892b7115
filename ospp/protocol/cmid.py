"""A client machine ID (CMID): a GUID, as Windows and Office make one per machine.

Requests may spell it in either case and with or without braces; KMS hosts count, and the
authority charges, the one canonical form (lower case, no braces), so that a machine is
never counted twice for how it wrote its ID. Anything else is not a CMID.
"""

from __future__ import annotations

import re

_GUID = re.compile(r"(\{)?([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})(?(1)\})")


def canonical_cmid(text: str) -> str | None:
    """The canonical form of a CMID (``8-4-4-4-12`` lower-case hex), or None if ``text`` is
    not a GUID in that form (braces allowed around it)."""
    found = _GUID.fullmatch(text)
    return found.group(2).lower() if found else None
