"""Batch signatures (docs/PROTOCOL.md): one signature per group-commit batch over the Merkle
root of its answers, each answer with its inclusion proof. Real host state and keys; real
clients (the CLI) checking what a front in the middle hands them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ospp.core.canonical import canonical
from ospp.core.clock import SystemClock
from ospp.core.endpoint import Endpoint
from ospp.kmshost.state import KmsHost
from ospp.protocol import kms, merkle
from ospp.protocol.crypto import unb64, verify_ed25519
from ospp.protocol.trust import anchors
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import Host, ThreadedServer, make_host, path_of, raw_request

BAD_SIGNATURE = "0xC004F042"  # what an answer the host key did not sign has always got

Answers = list[dict[str, Any]]


def _batch_request(**over: Any) -> dict[str, Any]:
    return raw_request(batch_signatures=True, **over)


def _old_style_verify(ospp: Ospp, answer: dict[str, Any]) -> bool:
    """How a version-1 client checks an answer: the signature over the canonical body."""
    _, host_key = kms.check_certificate(
        answer["certificate"], anchors(ospp.home / "client", ospp.env)
    )
    body = {k: v for k, v in answer.items() if k not in ("v", "ok", "signature", "certificate")}
    return verify_ed25519(unb64(host_key), canonical(body), unb64(answer["signature"]))


def _batch_verify(ospp: Ospp, answer: dict[str, Any]) -> bool:
    _, host_key = kms.check_certificate(
        answer["certificate"], anchors(ospp.home / "client", ospp.env)
    )
    unsigned = ("v", "ok", "signature", "certificate", "proof")
    body = canonical({k: v for k, v in answer.items() if k not in unsigned})
    message = merkle.proof_message(body, answer["proof"])
    return message is not None and verify_ed25519(
        unb64(host_key), message, unb64(answer["signature"])
    )


class BatchingFront(ThreadedServer):
    """Answers clients the way the host does, from the host's own store, key and code
    (KmsHost.process), gathering ``clients`` requests into one batch with ``decoys`` other
    batch-signed requests around them, once ``counted`` others were counted.
    ``change(answers, i)`` gives what client ``i`` is sent (a man in the middle editing
    genuine answers)."""

    def __init__(
        self,
        kms_home: Path,
        clients: int,
        decoys: int = 0,
        change: Callable[[Answers, int], dict[str, Any]] = lambda answers, i: answers[i],
        counted: int = 5,
    ) -> None:
        self.kms_home, self.clients, self.decoys, self.change = kms_home, clients, decoys, change
        self.batches: list[Answers] = []
        self.pending: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        if counted:  # clients already counted: the ones asking are activated
            self.batch([_batch_request() for _ in range(counted)])
        super().__init__(self.handle)

    def batch(self, messages: list[dict[str, Any]]) -> Answers:
        """One group-commit batch, answered by the real host code. The store is open only
        for the batch: an in-process CLI command closes every store when it ends."""
        host = KmsHost.open(self.kms_home, SystemClock())
        try:
            answers = host.process(host.serving_state(), messages)
        finally:
            host.db.close()
        return [a if isinstance(a, dict) else json.loads(a) for a in answers]

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pending.append((msg, fut))
        if len(self.pending) == self.clients:
            gathered, self.pending = self.pending, []
            half = self.decoys // 2
            messages = [_batch_request() for _ in range(half)]
            messages += [m for m, _ in gathered]
            messages += [_batch_request() for _ in range(self.decoys - half)]
            answers = self.batch(messages)
            self.batches.append(answers)
            clients = answers[half : half + self.clients]
            for i, (_, waiting) in enumerate(gathered):
                waiting.set_result(self.change(answers, half + i) if clients else {})
        return await asyncio.wait_for(fut, 60)


@pytest.fixture
def kms_home(ospp: Ospp) -> Path:
    make_host(ospp)
    return path_of(ospp).parent


def _stored_response(ospp: Ospp, machine: str) -> dict[str, Any]:
    with sqlite3.connect(ospp.store_file(machine)) as conn:
        (blob,) = conn.execute(
            "SELECT activation FROM licenses WHERE activation IS NOT NULL"
        ).fetchone()
    response: dict[str, Any] = json.loads(blob)["response"]
    return response


def _product(ospp: Ospp, machine: str, *flags: str) -> dict[str, Any]:
    found: dict[str, Any] = ospp("dstatus", machine, "--json", *flags).data()["products"][0]
    return found


def test_a_batch_of_several_clients_each_verifies(ospp: Ospp, kms_home: Path) -> None:
    machines = [f"b{n}" for n in range(5)]
    front = BatchingFront(kms_home, clients=len(machines), decoys=2)
    try:
        for m in machines:
            ospp.install("ProPlus2021", m)
            assert ospp(f"/sethst:{front.address}", m).code == 0
        with ThreadPoolExecutor(len(machines)) as pool:
            ran = list(pool.map(lambda m: ospp.proc("/act", m), machines))
    finally:
        front.close()
    assert [r.code for r in ran] == [0] * len(machines), [r.out for r in ran]
    [batch] = front.batches
    assert len({a["signature"] for a in batch}) == 1  # one signature for the whole batch
    stored = [_stored_response(ospp, m) for m in machines]
    assert sorted(r["proof"]["index"] for r in stored) == list(range(1, 6))
    assert {r["proof"]["size"] for r in stored} == {7}
    for m in machines:
        # the stored answer, proof and all, passes a full check of its signature
        assert _product(ospp, m, "--verify")["status"] == "LICENSED"


def test_a_mixed_batch_answers_each_request_in_its_form(ospp: Ospp, kms_home: Path) -> None:
    front = BatchingFront(kms_home, clients=1)
    try:
        old, new1, new2 = raw_request(), _batch_request(), _batch_request()
        bad = raw_request(batch_signatures="yes")
        answers = front.batch([old, new1, bad, new2])
    finally:
        front.close()
    v1, b1, refused, b2 = answers
    # a version-1 request gets a version-1 answer, which an old-style verifier accepts
    assert "proof" not in v1 and _old_style_verify(ospp, v1)
    assert v1["nonce"] == old["nonce"] and v1["ok"] is True and v1["v"] == 1
    # the batch-signed ones share one signature over their own two-leaf tree
    assert b1["signature"] == b2["signature"] != v1["signature"]
    assert (b1["proof"]["index"], b2["proof"]["index"]) == (0, 1)
    assert b1["proof"]["size"] == b2["proof"]["size"] == 2
    assert _batch_verify(ospp, b1) and _batch_verify(ospp, b2)
    # ... and an old-style verifier cannot take one for a version-1 answer, nor the reverse
    assert not _old_style_verify(ospp, b1)
    assert not _batch_verify(ospp, {**v1, "proof": {"index": 0, "size": 1, "path": []}})
    # a malformed opt-in is refused alone, like any malformed field
    assert refused["ok"] is False and refused["code"] == 0xC004F056
    assert "batch_signatures" in refused["message"]


def test_a_version_1_request_gets_a_version_1_answer_from_the_server(ospp: Ospp) -> None:
    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            old = conn.call(raw_request())
            new = conn.call(_batch_request())
    finally:
        host.stop()
    assert old["ok"] and "proof" not in old and _old_style_verify(ospp, old)
    assert new["ok"] and new["proof"] == {"index": 0, "path": [], "size": 1}
    assert _batch_verify(ospp, new) and not _old_style_verify(ospp, new)


def _other_proof(answers: Answers, i: int) -> dict[str, Any]:
    return {**answers[i], "proof": answers[i + 1]["proof"]}


def _swapped_side(answers: Answers, i: int) -> dict[str, Any]:
    proof = answers[i]["proof"]
    return {**answers[i], "proof": {**proof, "index": proof["index"] ^ 1}}


def _truncated(answers: Answers, i: int) -> dict[str, Any]:
    proof = answers[i]["proof"]
    return {**answers[i], "proof": {**proof, "path": proof["path"][:-1]}}


def _no_proof(answers: Answers, i: int) -> dict[str, Any]:
    return {k: v for k, v in answers[i].items() if k != "proof"}


class _OtherBatch:
    """The client's answer with the root signature of another batch holding the same request
    at the same place."""

    front: BatchingFront

    def __call__(self, answers: Answers, i: int) -> dict[str, Any]:
        request = {k: answers[i][k] for k in ("nonce", "client_time", "cmid", "sku_id")}
        again = raw_request(
            request["cmid"],
            nonce=request["nonce"],
            client_time=request["client_time"],
            sku_id=request["sku_id"],
            batch_signatures=True,
        )
        other = self.front.batch([_batch_request(), _batch_request(), again, _batch_request()])
        assert other[2]["proof"]["index"] == answers[i]["proof"]["index"]
        return {**answers[i], "signature": other[2]["signature"]}


class _Version1Signature:
    """A genuine version-1 signature of the same request, presented with the batch proof."""

    front: BatchingFront

    def __call__(self, answers: Answers, i: int) -> dict[str, Any]:
        request = {k: answers[i][k] for k in ("nonce", "client_time", "cmid", "sku_id")}
        [v1] = self.front.batch([raw_request(**request)])
        return {**v1, "proof": answers[i]["proof"]}


@pytest.mark.parametrize(
    "change",
    [_other_proof, _swapped_side, _truncated, _no_proof, _OtherBatch(), _Version1Signature()],
    ids=["other-proof", "swapped-side", "truncated-path", "no-proof", "other-batch", "v1-sig"],
)
def test_an_answer_with_a_wrong_proof_or_root_is_refused(
    ospp: Ospp, kms_home: Path, change: Callable[[Answers, int], dict[str, Any]]
) -> None:
    front = BatchingFront(kms_home, clients=1, decoys=4, change=change)
    if isinstance(change, _OtherBatch | _Version1Signature):
        change.front = front
    try:
        ospp.install("ProPlus2021", "t1")
        assert ospp(f"/sethst:{front.address}", "t1").code == 0
        ran = ospp("/act", "t1")
    finally:
        front.close()
    assert ran.code == 1 and BAD_SIGNATURE in ran.out, ran.out
    assert "did not sign" in ran.out
    assert _product(ospp, "t1")["status"] == "OOB_GRACE"


def test_an_answer_signed_on_its_own_is_still_accepted(ospp: Ospp, kms_home: Path) -> None:
    """What a host from before batch signatures sends (it ignores the field): the client
    checks it as it always did, now and in every later status read."""

    class Old:
        front: BatchingFront

        def __call__(self, answers: Answers, i: int) -> dict[str, Any]:
            request = {k: answers[i][k] for k in ("nonce", "client_time", "cmid", "sku_id")}
            [v1] = self.front.batch([raw_request(**request)])
            return v1

    old = Old()
    front = BatchingFront(kms_home, clients=1, change=old)
    old.front = front
    try:
        ospp.install("ProPlus2021", "o1")
        assert ospp(f"/sethst:{front.address}", "o1").code == 0
        assert ospp("/act", "o1").code == 0
    finally:
        front.close()
    assert "proof" not in _stored_response(ospp, "o1")
    assert _product(ospp, "o1", "--verify")["status"] == "LICENSED"


def test_a_stored_proof_edited_is_caught(ospp: Ospp, kms_home: Path) -> None:
    front = BatchingFront(kms_home, clients=1, decoys=4)
    try:
        ospp.install("ProPlus2021", "s1")
        assert ospp(f"/sethst:{front.address}", "s1").code == 0
        assert ospp("/act", "s1").code == 0
    finally:
        front.close()
    assert _product(ospp, "s1", "--verify")["status"] == "LICENSED"
    with sqlite3.connect(ospp.store_file("s1")) as conn:
        (blob,) = conn.execute(
            "SELECT activation FROM licenses WHERE activation IS NOT NULL"
        ).fetchone()
        act = json.loads(blob)
        act["response"]["proof"]["index"] ^= 1
        conn.execute(
            "UPDATE licenses SET activation=? WHERE activation IS NOT NULL", (json.dumps(act),)
        )
    st = _product(ospp, "s1")
    assert st["status"] != "LICENSED" and st["error_code"] == "0xC004E003"
