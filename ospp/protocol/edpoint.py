"""Which 32-byte strings ospp accepts as an Ed25519 public key that can sign.

An Ed25519 public key is a point on the curve, written as its y coordinate (255 bits, little
endian) and the sign of x. A point of small order (1, 2, 4 or 8) is no one's key: under it,
a signature with R a small-order point and S = 0 verifies for every message (RFC 8032's
verification equation holds with both sides the identity), so whoever is certified for such
a "key" gives everyone the power to sign as that host. OpenSSL's verification, which
``cryptography`` uses, accepts those signatures. A y at or above the field's prime is not a
canonical encoding. ospp refuses both: the authority will not certify them, and a client
will not accept an answer signed under them. (A key with a small-order component added to a
genuine one still needs its genuine half's private key to sign; that needs no check.)

Pure arithmetic, so that the paths that must not load ``cryptography`` can use it.
"""

from __future__ import annotations

_P = 2**255 - 19
_Y_MASK = (1 << 255) - 1
# The y coordinates of the eight points of small order: 1 (order 1), p-1 (order 2), 0 (the
# two points of order 4), and the two of the four points of order 8 (they come as y, p-y),
# the values libsodium's small-order check lists.
_Y8 = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})


def usable_ed25519_key(public_raw: bytes) -> bool:
    """Whether ``public_raw`` is a canonically encoded Ed25519 point not of small order.
    (Whether it is on the curve at all is for the verifier to find: it fails then.)"""
    if len(public_raw) != 32:
        return False
    y = int.from_bytes(public_raw, "little") & _Y_MASK
    return y < _P and y not in _SMALL_ORDER_Y
