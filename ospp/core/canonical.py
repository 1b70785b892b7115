"""The one canonical JSON encoding: the bytes that are signed, sealed and compared.

Sorted keys, no spaces, UTF-8. Signers and verifiers on every side call this, so a licence,
a KMS answer and a seal are computed over exactly the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def canonical(payload: Mapping[str, Any] | list[Any]) -> bytes:
    """``payload`` as canonical JSON bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
