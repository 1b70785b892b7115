"""Batch signatures: one Ed25519 signature over the Merkle root of a batch of KMS answers.

A KMS host answers a group-commit batch at once. A client that says it understands batch
signatures (``"batch_signatures": true`` in its request) gets an answer signed this way: the
host builds a Merkle tree over the canonical bodies of the batch's batch-signed answers, signs
the tree head once, and sends each answer with its inclusion proof. Checking one costs
O(log n) SHA-256 hashes and one signature verification. docs/PROTOCOL.md gives the format and
the security argument.

The tree is RFC 6962/9162's (domain-separated leaf and node hashes, a tree of any size, the
left subtree the largest power of two), built bottom-up: pair neighbours, carry an odd last
node up unchanged. The proof is checked with RFC 9162's algorithm (section 2.1.3.2), which
derives each step's side from the leaf's index and the tree size.

Both the host (building) and the client (checking) use this module.
"""

from __future__ import annotations

import base64
import hashlib

# What the host signs: this prefix, the tree size (8 bytes, big-endian), the 32-byte root.
# A version-1 answer's signature is over its canonical JSON body, which starts with '{':
# neither message can be taken for the other.
SIGNED_PREFIX = b"ospp-kms-batch-root-v1\n"
HASH_SIZE = 32
# A proof longer than this cannot belong to any tree a host builds (2**32 answers).
MAX_PATH = 32

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(body: bytes) -> bytes:
    """The leaf of an answer: SHA-256(0x00 || its canonical body)."""
    return hashlib.sha256(_LEAF + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An inner node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE + left + right).digest()


def signed_message(size: int, root: bytes) -> bytes:
    """The bytes a host signs for a batch of ``size`` answers with Merkle root ``root``."""
    return SIGNED_PREFIX + size.to_bytes(8, "big") + root


def build(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root of a tree over ``leaves`` (leaf hashes, at least one) and each leaf's path.

    A path lists the sibling hashes from the leaf up to the root (a carried-up node has no
    sibling at that level and adds nothing), as :func:`root_from_path` takes them.
    """
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    paths: list[list[bytes]] = [[] for _ in leaves]
    # Which leaves sit under each node of the current level (their positions, in order).
    under: list[range] = [range(i, i + 1) for i in range(len(leaves))]
    level = leaves
    while len(level) > 1:
        upper: list[bytes] = []
        spans: list[range] = []
        for i in range(0, len(level) - 1, 2):
            left, right = level[i], level[i + 1]
            for leaf in under[i]:
                paths[leaf].append(right)
            for leaf in under[i + 1]:
                paths[leaf].append(left)
            upper.append(node_hash(left, right))
            spans.append(range(under[i].start, under[i + 1].stop))
        if len(level) % 2:
            upper.append(level[-1])
            spans.append(under[-1])
        level, under = upper, spans
    return level[0], paths


def root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """The root that ``path`` proves ``leaf`` at ``index`` of a tree of ``size`` leaves under.

    None when the proof cannot be one for that position (index outside the tree, a path of
    the wrong length or with an element that is not a hash). RFC 9162, section 2.1.3.2.
    """
    if not 0 <= index < size or len(path) > MAX_PATH:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0 or len(p) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def proof_message(body: bytes, proof: object) -> bytes | None:
    """The message the batch signature must verify over, for an answer with this body and
    ``proof`` as received (``{"index": i, "size": n, "path": [base64 hashes]}``); None when
    the proof is malformed or cannot place this answer in a tree of that size."""
    if not isinstance(proof, dict) or proof.keys() != {"index", "size", "path"}:
        return None  # nothing unchecked rides along: the proof is stored with the answer
    index, size, path = proof.get("index"), proof.get("size"), proof.get("path")
    if (
        type(index) is not int
        or type(size) is not int
        or not 0 < size <= 1 << MAX_PATH
        or not isinstance(path, list)
        or len(path) > MAX_PATH
    ):
        return None
    hashes: list[bytes] = []
    for element in path:
        if not isinstance(element, str):
            return None
        try:
            hashes.append(base64.b64decode(element.encode("ascii"), validate=True))
        except (ValueError, UnicodeEncodeError):
            return None
    root = root_from_path(leaf_hash(body), index, size, hashes)
    return None if root is None else signed_message(size, root)
