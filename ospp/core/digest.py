"""SHA-256 and HMAC-SHA256 without loading OpenSSL, for the status path.

Importing ``hashlib`` (and ``hmac``, which imports it) loads OpenSSL's libcrypto and sets up its
digests: 3 to 20 ms by ``python -X importtime`` on a 2-core machine, more than ``/dstatus``
spends on everything else it imports beyond click. CPython carries its own SHA-256
(``_sha256`` in 3.11, ``_sha2`` from 3.12), which loads in a quarter of a millisecond; this
module uses it when it is there and ``hashlib`` otherwise. The results are the same bytes
(tests/test_digest.py compares them with ``hashlib`` and ``hmac``), so seals, hardware hashes
and trust-anchor fingerprints computed here match those computed anywhere else.

Signatures, keys and everything on the wire stay with ``cryptography`` (``ospp.protocol.crypto``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Protocol, cast

BLOCK_SIZE = 64  # SHA-256's block size in bytes (RFC 2104's B)


class Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def _sha256_constructor() -> Callable[[bytes], Hash]:
    # Only the module this version has is tried: a failed import searches all of sys.path.
    name = "_sha2" if sys.version_info >= (3, 12) else "_sha256"
    try:
        return cast("Callable[[bytes], Hash]", importlib.import_module(name).sha256)
    except (ImportError, AttributeError):
        import hashlib  # another Python: the same digest, through OpenSSL

        return hashlib.sha256


sha256 = _sha256_constructor()

_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes, message: bytes) -> str:
    """HMAC-SHA256 of ``message`` under ``key`` (RFC 2104), as hex: ``hmac.new(key, message,
    hashlib.sha256).hexdigest()``."""
    if len(key) > BLOCK_SIZE:
        key = sha256(key).digest()
    key = key.ljust(BLOCK_SIZE, b"\0")
    inner = sha256(key.translate(_IPAD))
    inner.update(message)
    outer = sha256(key.translate(_OPAD))
    outer.update(inner.digest())
    return outer.hexdigest()


def compare_digest(a: str, b: str) -> bool:
    """Whether two strings (a seal read from a store and the one computed) are equal, in time
    that does not depend on where they differ. Unlike ``hmac.compare_digest``, any text is
    accepted: a store edited to hold a non-ASCII seal is a mismatch, not an error."""
    from _operator import _compare_digest  # what hmac.compare_digest is without OpenSSL

    return _compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))
