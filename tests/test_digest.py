"""ospp.core.digest gives the same bytes as hashlib and hmac, which it avoids importing."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as hs

from ospp.core import digest


@given(hs.binary(max_size=300))
def test_sha256_is_hashlib_sha256(data: bytes) -> None:
    ours = digest.sha256(data)
    assert ours.digest() == hashlib.sha256(data).digest()
    ours.update(data)
    assert ours.hexdigest() == hashlib.sha256(data + data).hexdigest()


@given(hs.binary(max_size=200), hs.binary(max_size=300))
def test_hmac_sha256_is_hmac(key: bytes, message: bytes) -> None:
    assert digest.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).hexdigest()


def test_hmac_sha256_at_the_block_size_edges() -> None:
    # RFC 4231 test case 6: a key longer than the block is hashed first
    key = b"\xaa" * 131
    message = b"Test Using Larger Than Block-Size Key - Hash Key First"
    assert digest.hmac_sha256(key, message) == (
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    )
    for size in (63, 64, 65):
        key = bytes(range(size))
        assert digest.hmac_sha256(key, b"m") == hmac.new(key, b"m", hashlib.sha256).hexdigest()


@given(hs.text(max_size=80), hs.text(max_size=80))
def test_compare_digest_takes_any_text(a: str, b: str) -> None:
    assert digest.compare_digest(a, b) is (a == b)
    assert digest.compare_digest(a, a)


def test_compare_digest_takes_lone_surrogates() -> None:
    assert digest.compare_digest("\udc80", "\udc80")
    assert not digest.compare_digest("\udc80", "\udc81")


def test_importing_it_loads_no_openssl() -> None:
    code = (
        "import sys, ospp.core.digest\n"
        "print(sorted({'_hashlib', 'hashlib', 'hmac'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
