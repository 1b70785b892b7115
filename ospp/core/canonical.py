"""The one canonical JSON encoding: the bytes that are signed, sealed and compared.

Sorted keys, no spaces, UTF-8. Signers and verifiers on every side call this, so a licence,
a KMS answer and a seal are computed over exactly the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 32  # of anything ospp signs, seals or stores; its own documents need about 6


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (decoded JSON) nests lists and objects more than ``limit`` levels
    deep: what a peer sent that deep could not be encoded again (RecursionError) when it is
    sealed, stored or verified, so it is refused where it comes in."""
    level: list[tuple[object, int]] = [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        level.extend((child, depth + 1) for child in children)
    return False


def load_json(text: str | bytes) -> Any:
    """``json.loads`` for ospp's state files, where JSON nested deeper than the decoder can
    follow is a ValueError like any other damage (a RecursionError is not one)."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def canonical(payload: Mapping[str, Any] | list[Any]) -> bytes:
    """``payload`` as canonical JSON bytes."""
    import json  # here: too_deep, on the /dstatus path, needs no JSON (about 1 ms)

    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
