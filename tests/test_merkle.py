"""The batch-signature Merkle tree (ospp/protocol/merkle.py): every leaf of every tree proves
its place, and any change to a leaf, a path element, the side or the root is caught."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from ospp.protocol import merkle

N = 70


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"answer {i}".encode()) for i in range(n)]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash, written as the RFC defines it (the reference)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def test_hashes_are_domain_separated() -> None:
    body = b'{"a":1}'
    assert merkle.leaf_hash(body) == hashlib.sha256(b"\x00" + body).digest()
    left, right = b"l" * 32, b"r" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # An inner node is not the leaf of its children's concatenation.
    assert merkle.node_hash(left, right) != merkle.leaf_hash(b"\x01" + left + right)


def test_signed_message_cannot_be_a_version_1_body() -> None:
    message = merkle.signed_message(3, b"\x00" * 32)
    assert message.startswith(merkle.SIGNED_PREFIX)
    assert not message.startswith(b"{")
    assert len(message) == len(merkle.SIGNED_PREFIX) + 8 + 32


def test_every_leaf_of_every_tree_size_verifies() -> None:
    for n in range(1, N + 1):
        leaves = _leaves(n)
        root, paths = merkle.build(leaves)
        assert root == _mth(leaves)
        for i, leaf in enumerate(leaves):
            assert merkle.root_from_path(leaf, i, n, paths[i]) == root
            assert len(paths[i]) <= max(1, (n - 1).bit_length())


def test_an_empty_tree_is_refused() -> None:
    with pytest.raises(ValueError):
        merkle.build([])


@given(n=hs.integers(1, N), data=hs.data())
def test_a_changed_leaf_path_side_or_root_fails(n: int, data: hs.DataObject) -> None:
    leaves = _leaves(n)
    root, paths = merkle.build(leaves)
    i = data.draw(hs.integers(0, n - 1))
    path = paths[i]
    # another leaf (a changed body)
    assert merkle.root_from_path(merkle.leaf_hash(b"changed"), i, n, path) != root
    # any other index (for a sibling: the swapped side) with this leaf's path
    j = data.draw(hs.integers(0, n - 1).filter(lambda j: j != i))
    assert merkle.root_from_path(leaves[i], j, n, path) != root
    # a wrong tree size: the same path may fit another size (leaf 0 of 33 or 34 leaves), so
    # the size is part of the signed message
    m = data.draw(hs.integers(1, N + 5).filter(lambda m: m != n))
    shown = merkle.root_from_path(leaves[i], i, m, path)
    signed = merkle.signed_message(n, root)
    assert shown is None or merkle.signed_message(m, shown) != signed
    if path:
        # one bit of one path element flipped
        k = data.draw(hs.integers(0, len(path) - 1))
        bit = data.draw(hs.integers(0, 255))
        element = bytearray(path[k])
        element[bit // 8] ^= 1 << (bit % 8)
        changed = [*path[:k], bytes(element), *path[k + 1 :]]
        assert merkle.root_from_path(leaves[i], i, n, changed) != root
        # a truncated path, an extended one, two elements swapped
        assert merkle.root_from_path(leaves[i], i, n, path[:-1]) is None
        assert merkle.root_from_path(leaves[i], i, n, [*path, path[0]]) is None
        if len(path) > 1:
            swapped = [path[1], path[0], *path[2:]]
            assert merkle.root_from_path(leaves[i], i, n, swapped) != root
    # the root of another batch
    other, _ = merkle.build(_leaves(n + 1))
    assert merkle.root_from_path(leaves[i], i, n, path) != other


def _wire(i: int, n: int, path: list[bytes]) -> dict[str, object]:
    return {"index": i, "size": n, "path": [base64.b64encode(p).decode() for p in path]}


def test_proof_message_checks_the_received_form() -> None:
    bodies = [f'{{"n":{i}}}'.encode() for i in range(5)]
    root, paths = merkle.build([merkle.leaf_hash(b) for b in bodies])
    expected = merkle.signed_message(5, root)
    for i, body in enumerate(bodies):
        assert merkle.proof_message(body, _wire(i, 5, paths[i])) == expected
    good = _wire(2, 5, paths[2])
    bad: object
    for bad in (
        None,
        [],
        {**good, "index": True},
        {**good, "index": 2.0},
        {**good, "size": 0},
        {**good, "size": "5"},
        {**good, "path": "AAAA"},
        {**good, "path": [1]},
        {**good, "path": ["not base64!"]},
        {**good, "path": ["é"]},
        {**good, "path": [base64.b64encode(b"short").decode()]},
        {**good, "path": [good["path"]] * 40},
        {**good, "path": paths[2] * 20},
        {**good, "index": -1},
        {**good, "index": 5},
        {**good, "size": 1 << 40},
        {**good, "junk": [[[]]]},  # nothing unchecked rides along into the store
        {"index": 2, "size": 5},
    ):
        assert merkle.proof_message(bodies[2], bad) is None, bad
    # another answer's body with this proof: a different tree head
    assert merkle.proof_message(bodies[3], good) != expected
