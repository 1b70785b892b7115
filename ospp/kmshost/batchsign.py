"""Batch-signed KMS answers: one signature per group-commit batch over the Merkle root of the
batch's batch-signed answers, each answer sent with its inclusion proof (docs/PROTOCOL.md;
the tree itself is ``ospp.protocol.merkle``, shared with the client).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

from ospp.protocol import merkle


def sign_batch(
    sign: Callable[[bytes], bytes],
    answers: list[dict[str, Any] | bytes],
    batched: list[tuple[int, bytes, bytes]],
) -> None:
    """Fill in ``answers[position]`` for each ``(position, signed body, tail)`` of ``batched``
    (at least one): the body, the fixed fields, the proof, the batch's one signature (made
    with ``sign``) and the tail (the certificate). The bytes are what the client parses and
    checks: the body is canonical JSON, the proof is ``{"index", "path", "size"}``."""
    size = len(batched)
    root, paths = merkle.build([merkle.leaf_hash(signed) for _, signed, _ in batched])
    signature = binascii.b2a_base64(sign(merkle.signed_message(size, root)), newline=False)
    quoted: dict[bytes, bytes] = {}  # each node as a JSON string, encoded once
    for index, ((position, signed, tail), path) in enumerate(zip(batched, paths, strict=True)):
        shown = []
        for node in path:
            text = quoted.get(node)
            if text is None:
                text = quoted[node] = b'"' + binascii.b2a_base64(node, newline=False) + b'"'
            shown.append(text)
        answers[position] = (
            signed[:-1]
            + b',"v":1,"ok":true,"proof":{"index":%d,"path":[%b],"size":%d}'
            % (index, b",".join(shown), size)
            + b',"signature":"'
            + signature
            + tail
        )
