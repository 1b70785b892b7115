"""Trust promises under attack: copied and re-sealed activations, what a KMS host discloses."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from tests.conftest import Ospp
from tests.kmsutil import Host, client, make_host, signed_answer

UNTRUSTED = "0xC004E003"


@pytest.fixture
def host(ospp: Ospp) -> Iterator[Host]:
    make_host(ospp)
    h = Host(ospp)
    yield h
    if h.alive():
        h.stop()


def activate_five(ospp: Ospp, host: Host, prefix: str) -> None:
    """Five clients of ``host``: the fifth reaches the threshold, the others retry."""
    for n in range(1, 6):
        client(ospp, f"{prefix}{n}", host)
        ospp("/act", f"{prefix}{n}")
    for n in range(1, 6):
        assert ospp("/act", f"{prefix}{n}").code == 0


def product_status(ospp: Ospp, machine: str, product: str, *flags: str) -> dict[str, Any]:
    ran = ospp("dstatus", machine, "--json", *flags)
    found: list[dict[str, Any]] = ran.data()["products"]
    return next(p for p in found if p["product_id"] == product)


def activation_row(ospp: Ospp, machine: str, product: str) -> str:
    with sqlite3.connect(ospp.store_file(machine)) as conn:
        for sku_id, blob in conn.execute("SELECT sku_id, activation FROM licenses"):
            if blob and sku_id == _sku(product):
                return str(blob)
    raise AssertionError(f"{machine} has no activation of {product}")


def put_activation(ospp: Ospp, machine: str, product: str, blob: str) -> None:
    with sqlite3.connect(ospp.store_file(machine)) as conn:
        done = conn.execute(
            "UPDATE licenses SET activation=? WHERE sku_id=?", (blob, _sku(product))
        ).rowcount
    assert done == 1


def _sku(product: str) -> str:
    from ospp.core.catalog import Channel, catalog

    found = catalog().product(product)
    assert found is not None
    return found.sku(Channel.KMS_CLIENT).sku_id


def _sku_mak(product: str) -> str:
    from ospp.core.catalog import Channel, catalog

    found = catalog().product(product)
    assert found is not None
    return found.sku(Channel.MAK).sku_id


# -- a stored KMS activation is bound to this machine and this licence ---------------------------


def test_copied_kms_activation_is_not_licensed(ospp: Ospp, host: Host):
    activate_five(ospp, host, "c")
    assert product_status(ospp, "c5", "ProPlus2021")["status"] == "LICENSED"
    row = activation_row(ospp, "c5", "ProPlus2021")

    # 1. into another machine's store, same product
    client(ospp, "stranger", host)
    put_activation(ospp, "stranger", "ProPlus2021", row)
    st = product_status(ospp, "stranger", "ProPlus2021")
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    assert "another machine" in st["detail"] or "cmid" in st["detail"], st

    # 2. into another product's row of the same machine (a product the host also covers)
    assert ospp("install-product", "ProPlus2019", "c5").code == 0
    put_activation(ospp, "c5", "ProPlus2019", row)
    st = product_status(ospp, "c5", "ProPlus2019")
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    # the genuine row is untouched and still good
    assert product_status(ospp, "c5", "ProPlus2021")["status"] == "LICENSED"

    # 3. the text output says the same
    out = ospp("/dstatus", "stranger").out
    assert "LICENSE STATUS:  ---LICENSED---" not in out and UNTRUSTED in out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request.nonce", "0" * 32),
        ("request.client_time", "2026-01-01T00:00:00Z"),
        ("request", "not a request"),
        ("count", 10),
        ("activated_at", "2099-01-01T00:00:00Z"),
        ("response.sku_id", "b6512468-269d-4910-ad2d-a6a3d769fcf7"),
    ],
)
def test_stored_kms_activation_fields_must_match_the_signed_response(
    ospp: Ospp, host: Host, field: str, value: Any
):
    activate_five(ospp, host, "r")
    act = json.loads(activation_row(ospp, "r1", "ProPlus2021"))
    assert act["request"]["nonce"] == act["response"]["nonce"]
    del act["seal"]  # edited by hand and not re-sealed: the full check runs
    put_activation(ospp, "r1", "ProPlus2021", json.dumps(act))
    assert product_status(ospp, "r1", "ProPlus2021")["status"] == "LICENSED"
    *path, last = field.split(".")
    target = act
    for name in path:
        target = target[name]
    target[last] = value
    put_activation(ospp, "r1", "ProPlus2021", json.dumps(act))
    st = product_status(ospp, "r1", "ProPlus2021")
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st


def test_activation_stored_before_requests_were_kept_still_verifies(ospp: Ospp, host: Host):
    activate_five(ospp, host, "o")
    act = json.loads(activation_row(ospp, "o2", "ProPlus2021"))
    del act["request"], act["seal"]  # as an older ospp stored it, not yet sealed here
    put_activation(ospp, "o2", "ProPlus2021", json.dumps(act))
    assert product_status(ospp, "o2", "ProPlus2021")["status"] == "LICENSED"
    client(ospp, "o-copy", host)
    put_activation(ospp, "o-copy", "ProPlus2021", json.dumps(act))
    st = product_status(ospp, "o-copy", "ProPlus2021")
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st


# -- the seal and --verify ---------------------------------------------------------------------


def reseal(ospp: Ospp, machine: str, product_sku: str, act: dict[str, Any]) -> None:
    """What any owner of the store can do: edit an activation and seal it again with the seal
    key that sits next to the store."""
    from ospp.core.paths import ospp_home
    from ospp.machine.seal import mac, seal_key
    from ospp.protocol.trust import trusted_fingerprints

    home = ospp_home(ospp.env)
    key = seal_key(home, create=False)
    assert key is not None
    with sqlite3.connect(ospp.store_file(machine)) as conn:
        (cmid,) = conn.execute("SELECT value FROM meta WHERE name='cmid'").fetchone()
        (product_key,) = conn.execute(
            "SELECT product_key FROM licenses WHERE sku_id=?", (product_sku,)
        ).fetchone()
        body = {k: v for k, v in act.items() if k != "seal"}
        body["seal"] = mac(
            key, product_sku, product_key, cmid, trusted_fingerprints(home, ospp.env), body
        )
        conn.execute(
            "UPDATE licenses SET activation=? WHERE sku_id=?",
            (json.dumps(body, sort_keys=True), product_sku),
        )


def test_resealed_kms_activation_fools_dstatus_but_not_verify(ospp: Ospp, host: Host):
    activate_five(ospp, host, "s")
    sku = _sku("ProPlus2021")
    act = json.loads(activation_row(ospp, "s1", "ProPlus2021"))
    act["valid_until"] = "2099-01-01T00:00:00+00:00"
    reseal(ospp, "s1", sku, act)
    later = {"OSPP_NOW": "2030-06-01"}  # long after the genuine 180 days
    # the attack works against the seal alone: this is the documented limit of the seal
    fooled = ospp("dstatus", "s1", "--json", env=later).data()["products"][0]
    assert fooled["status"] == "LICENSED"
    for flags in (
        ("dstatus", "s1", "--verify", "--json"),
        ("dstatusall", "s1", "--verify", "--json"),
    ):
        ran = ospp(*flags, env=later)
        st = next(p for p in ran.data()["products"] if p["sku_id"] == sku)
        assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    text = ospp("/dstatus", "s1", "--verify", env=later).out
    assert UNTRUSTED in text and "---LICENSED---" not in text
    # a genuine activation passes --verify
    assert product_status(ospp, "s2", "ProPlus2021", "--verify")["status"] == "LICENSED"


@pytest.mark.parametrize(
    "edit",
    [
        {"valid_until": "soon"},
        {"valid_until": "2099-01-01T00:00:00"},  # no zone
        {"valid_until": None},
        {"activated_at": 5},
        {"kind": "phone", "valid_until": None},
    ],
    ids=["not a time", "no zone", "no expiry", "a number", "another kind"],
)
def test_a_resealed_activation_that_is_not_one_is_a_store_error(
    ospp: Ospp, host: Host, edit: dict[str, Any]
):
    """What the store's owner re-seals is still read as data: an expiry that is not a time is
    reported (0x8007000D, exit 3) by every status read, not an internal error."""
    activate_five(ospp, host, "r")
    sku = _sku("ProPlus2021")
    act = json.loads(activation_row(ospp, "r1", "ProPlus2021"))
    act.update(edit)
    reseal(ospp, "r1", sku, {k: v for k, v in act.items() if v is not None})
    before = activation_row(ospp, "r1", "ProPlus2021")
    for args in (("/dstatus", "r1"), ("dstatus", "r1", "--verify"), ("slmgr", "/dlv", "r1")):
        ran = ospp.proc(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out + ran.err, (args, ran)
    assert activation_row(ospp, "r1", "ProPlus2021") == before


def test_resealed_mak_signature_is_caught_by_verify(ospp: Ospp):
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install("ProPlus2021", "m1")
    assert ospp("/inpkey:" + key, "m1", "--act").code == 0
    from ospp.core.catalog import Channel, catalog

    product = catalog().product("ProPlus2021")
    assert product is not None
    sku = product.sku(Channel.MAK).sku_id
    with sqlite3.connect(ospp.store_file("m1")) as conn:
        (blob,) = conn.execute("SELECT activation FROM licenses WHERE sku_id=?", (sku,)).fetchone()
    act = json.loads(blob)
    act["licence"]["product"] = "ProPlus2024"  # any edit: the signature no longer matches
    reseal(ospp, "m1", sku, act)
    assert ospp("dstatus", "m1", "--json").data()["products"][0]["status"] == "LICENSED"
    ran = ospp("dstatus", "m1", "--verify", "--json")
    st = ran.data()["products"][0]
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    assert "altered" in st["detail"]


def test_seal_is_the_hmac_sha256_that_earlier_versions_wrote(ospp: Ospp):
    """Seals are checked without hashlib or hmac (ospp.core.digest): the bytes must be the ones
    hmac gives, over fingerprints as the authority's public key file names them, so that stores
    sealed before still match."""
    import hashlib
    import hmac

    from ospp.core.canonical import canonical
    from ospp.core.paths import ospp_home
    from ospp.machine.seal import seal_key
    from ospp.protocol.trust import anchors, trusted_fingerprints

    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install("ProPlus2021", "h1")
    assert ospp("/inpkey:" + key, "h1", "--act").code == 0
    home = ospp_home(ospp.env)
    fingerprints = sorted(anchors(home, ospp.env))
    assert fingerprints and trusted_fingerprints(home, ospp.env) == fingerprints
    sku = _sku_mak("ProPlus2021")
    with sqlite3.connect(ospp.store_file("h1")) as conn:
        (cmid,) = conn.execute("SELECT value FROM meta WHERE name='cmid'").fetchone()
        blob, product_key = conn.execute(
            "SELECT activation, product_key FROM licenses WHERE sku_id=?", (sku,)
        ).fetchone()
    act = json.loads(blob)
    body = {k: v for k, v in act.items() if k != "seal"}
    secret = seal_key(home, create=False)
    assert secret is not None
    message = canonical([sku, product_key, cmid, fingerprints, body])
    assert act["seal"] == hmac.new(secret, message, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("seal", ["\u00e9t\u00e9", "\ud800", 42, None])
def test_a_seal_edited_into_anything_is_a_mismatch_not_a_crash(ospp: Ospp, seal: object):
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install("ProPlus2021", "e1")
    assert ospp("/inpkey:" + key, "e1", "--act").code == 0
    sku = _sku_mak("ProPlus2021")
    with sqlite3.connect(ospp.store_file("e1")) as conn:
        (blob,) = conn.execute("SELECT activation FROM licenses WHERE sku_id=?", (sku,)).fetchone()
        act = json.loads(blob)
        act["seal"] = seal
        conn.execute("UPDATE licenses SET activation=? WHERE sku_id=?", (json.dumps(act), sku))
    # the signature is checked instead, and it still holds
    ran = ospp("dstatus", "e1", "--json")
    assert ran.code == 0 and ran.data()["products"][0]["status"] == "LICENSED", ran.out


# -- what a KMS host discloses -------------------------------------------------------------------


def recovered_keys(blob: bytes) -> set[str]:
    """Every product key that can be rebuilt from ``blob``: keys written out, installation
    IDs (grouped or not, as 63 digits with check digits or as 54 data digits), and the
    security value of a key combined with any serial found."""
    import re

    from ospp.core.catalog import Channel, catalog
    from ospp.core.errors import OsppError
    from ospp.protocol import keys, phone

    text = blob.decode("utf-8", "replace")
    found: set[str] = set()
    for run in re.findall(r"[" + keys.ALPHABET + r"\-]{25,}", text.upper()):
        compact = run.replace("-", "")
        for i in range(len(compact) - 24):
            try:
                key = keys.parse(compact[i : i + 25])
            except OsppError:
                continue
            if key.channel is not Channel.KMS_CLIENT:
                found.add(key.text)
    for run in re.findall(r"[0-9][0-9\- ]{52,}[0-9]", text):
        digits = re.sub(r"[^0-9]", "", run)
        candidates = []
        for i in range(len(digits) - 62):
            with contextlib.suppress(OsppError):
                candidates.append(phone.InstallationId.parse(digits[i : i + 63]))
        for i in range(len(digits) - 53):  # the 54 data digits, without check digits
            n = int(digits[i : i + 54])
            candidates.append(
                phone.InstallationId(
                    n >> 164 & 0xFF,
                    n >> 162 & 3,
                    n >> 130 & (2**32 - 1),
                    n >> 72 & (2**60 - 1),
                    0,
                    0,
                    n >> 174,
                )
            )
        for iid in candidates:
            product = catalog().by_index(iid.product_index)
            channel = {1: Channel.MAK, 2: Channel.KMS_HOST}.get(iid.channel_code)
            if product is not None and channel is not None:
                found.add(keys.encode(product, channel, iid.serial, iid.key_check))
    return found


def frame_bytes(port: int, message: dict[str, Any]) -> bytes:
    """The raw bytes a server sends back for ``message``."""
    import socket
    import struct

    body = json.dumps(message).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(">I", len(body)) + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = sock.recv(65536)
            assert chunk, "the host closed the connection"
            data += chunk
    return data


def phone_host(ospp: Ospp) -> str:
    """Install a KMS host key and activate it by phone; return the key."""
    key: str = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
    ).data()["key"]
    assert ospp("kms", "install-key", key).code == 0
    iid = ospp("kms", "dinstid", "--json").data()["installation_id"]
    cid = ospp("center", "confirm", iid, "--json").data()["cid"]
    ran = ospp("kms", "actcid", cid)
    assert ran.code == 0, ran.out
    return key


def test_nothing_a_phone_activated_host_sends_or_a_client_stores_rebuilds_its_key(ospp: Ospp):
    key = phone_host(ospp)
    from ospp.protocol import keys, phone

    parsed = keys.parse(key)
    security = parsed.security
    # the test's recovery works: the installation ID an older ospp host read out had the key
    older = phone.InstallationId(parsed.product.index, 2, parsed.serial, security, 1, 2, 2)
    assert key in recovered_keys(older.text().encode())
    # the one it reads out now, over the phone, has not
    assert key not in recovered_keys(ospp("kms", "dinstid", "--json").out.encode())
    h = Host(ospp)
    try:
        from tests.kmsutil import raw_request

        sent = [
            frame_bytes(h.port, {"v": 1, **raw_request()}),
            frame_bytes(h.port, {"v": 1, **raw_request(sku_id="nonsense")}),
            frame_bytes(h.port, {"v": 1, "op": "kms-ping"}),
        ]
        assert b'"ok":true' in sent[0].replace(b" ", b"")
        for n in range(1, 6):
            client(ospp, f"p{n}", h)
            ospp("/act", f"p{n}")
        assert ospp("/act", "p1").code == 0
        assert product_status(ospp, "p1", "ProPlus2021")["status"] == "LICENSED"
    finally:
        h.stop()
    stored = b"".join(p.read_bytes() for p in ospp.store_file("p1").parent.iterdir())
    assert b'"phone"' in stored  # the client did store the host's certificate
    for blob in [*sent, stored]:
        assert key not in recovered_keys(blob)
        for form in (str(security), f"{security:x}", f"{security:015x}"):
            assert form.encode() not in blob.lower()


def legacy_certificate(
    ospp: Ospp, key_text: str, host_key_b64: str, version: int = 1
) -> dict[str, Any]:
    """A format 1 phone certificate, as older ospp hosts stored and sent it: the whole IID
    (security value included) and a CID over it from the test's own, trusted, authority.
    ``version`` other than 1 makes one that older ospp never made."""
    from pathlib import Path

    from ospp.authority.state import Authority
    from ospp.core.clock import SystemClock
    from ospp.protocol import keys, phone
    from ospp.protocol.kms import host_tag_source

    key = keys.parse(key_text)
    iid = phone.InstallationId(
        key.product.index,
        2,
        key.serial,
        key.security,
        0x12345,
        phone.machine_tag(host_tag_source(host_key_b64)),
        version,
    )
    authority = Authority.open(Path(ospp.env["OSPP_CENTER_HOME"]), SystemClock())
    r, s = authority.keys.sign_cid(iid.message())
    return {
        "kind": "phone",
        "iid": iid.text(),
        "cid": phone.encode_cid(r, s),
        "host_key": host_key_b64,
    }


def test_a_host_activated_online_and_by_phone_is_one_host_at_the_authority(ospp: Ospp):
    """The authority counts a KMS host by its signing key online as the phone centre does,
    so one host activated both ways uses one of its key's host activations; a host counted
    by its CMID before keeps being counted under it."""
    import uuid
    from collections.abc import Callable
    from pathlib import Path

    from ospp.authority.state import Authority
    from ospp.core.clock import SystemClock
    from ospp.protocol import keys
    from ospp.protocol.crypto import HostKey, b64
    from ospp.protocol.phone import machine_tag

    def used() -> int:
        listed = ospp("center", "keys", "--json").data()["keys"]
        return int(next(k for k in listed if k["channel"] == "kms-host")["used"])

    key = phone_host(ospp)
    assert used() == 1
    assert ospp("kms", "activate").code == 0  # online, the same host
    assert used() == 1
    iid = ospp("kms", "dinstid", "--json").data()["installation_id"]
    assert ospp("center", "confirm", iid).code == 0 and used() == 1

    # another host (another signing key, another CMID) is another host
    def with_authority(act: Callable[[Authority], object]) -> None:
        authority = Authority.open(Path(ospp.env["OSPP_CENTER_HOME"]), SystemClock())
        try:
            act(authority)
        finally:
            authority.close()

    def online(cmid: str) -> Callable[[Authority], object]:
        host_key = b64(HostKey(HostKey.generate()).public_raw)
        request = {"key": key, "hardware": "00", "nonce": "n", "cmid": cmid}
        return lambda authority: authority.activate({**request, "host_key": host_key})

    with_authority(online(str(uuid.uuid4())))
    assert used() == 2
    # a host recorded by its CMID, as before: activated again (even with a new signing
    # key), it is the same host
    parsed, old_cmid = keys.parse(key), str(uuid.uuid4())
    tag = f"tag:{machine_tag(old_cmid):08x}"
    with_authority(
        lambda authority: authority.store.count(
            parsed.serial, lambda tx: authority._count(tx, parsed, tag, "00", "online")
        )
    )
    assert used() == 3
    with_authority(online(old_cmid))
    assert used() == 3


def test_centre_refuses_an_old_style_kms_host_iid(ospp: Ospp):
    from ospp.protocol import keys, phone

    key = keys.parse(
        ospp(
            "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
        ).data()["key"]
    )
    old = phone.InstallationId(key.product.index, 2, key.serial, key.security, 1, 2, 1)
    ran = ospp("center", "confirm", old.text())
    assert ran.code == 1 and "0xC004F02C" in ran.out and "older ospp" in ran.out
    new = ospp(
        "center",
        "confirm",
        phone.InstallationId.for_host(
            key.product.index, key.serial, key.security, 2**72 - 1
        ).text(),
    )
    assert new.code == 0, new.out


def test_host_with_an_old_style_phone_certificate_must_be_activated_again(ospp: Ospp):
    key = phone_host(ospp)
    kms_db = ospp.home / "kms" / "kms.db"
    with sqlite3.connect(kms_db) as conn:
        cert = json.loads(conn.execute("SELECT certificate FROM packs").fetchone()[0])
        assert cert["format"] == 2 and "iid" not in cert
        legacy = legacy_certificate(ospp, key, cert["host_key"])
        conn.execute("UPDATE packs SET certificate=?", (json.dumps(legacy),))
    status = ospp("kms", "status", "--json").data()
    assert status["activated"] is False and status["certified"] == "phone-disclosing"
    assert "activated again" in status["attention"]
    assert "ATTENTION" in ospp("kms", "status").out
    h = Host(ospp)
    try:
        from tests.kmsutil import raw_request

        sent = frame_bytes(h.port, {"v": 1, **raw_request()})
        answer = json.loads(sent[4:])
        assert answer["ok"] is False and answer["code"] == 0xC004F041
        assert "new host key" in answer["message"]
        assert key not in recovered_keys(sent)
        client(ospp, "lg1", h)
        ran = ospp("/act", "lg1")
        assert ran.code == 1 and "0xC004F041" in ran.out
    finally:
        h.stop()


def test_clients_refuse_old_style_phone_certificates_in_new_answers(ospp: Ospp):
    from ospp.protocol.crypto import HostKey, b64
    from tests.test_kms import RogueHost

    key = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
    ).data()["key"]
    signer = HostKey(HostKey.generate())
    cert = legacy_certificate(ospp, key, b64(signer.public_raw))
    answers: list[dict[str, Any]] = []

    def answer(msg: dict[str, Any]) -> dict[str, Any]:
        answers.append(signed_answer(signer, cert, msg))
        return answers[-1]

    rogue = RogueHost(answer)
    try:
        ospp("install-product", "ProPlus2021", "lc1")
        ospp(f"/sethst:127.0.0.1:{rogue.port}", "lc1")
        ran = ospp("/act", "lc1")
        assert ran.code == 1 and "0xC004F042" in ran.out and "old-style" in ran.out
    finally:
        rogue.close()
    # An activation stored from such a host before this change still verifies on its machine
    # (and only there), until it expires or the client renews with a re-activated host.
    response = answers[-1]
    from datetime import datetime, timedelta

    from ospp.core.clock import iso

    start = datetime.fromisoformat(response["client_time"].replace("Z", "+00:00"))
    stored = {
        "kind": "kms",
        "host": f"127.0.0.1:{rogue.port}",
        "count": 50,
        "activated_at": response["client_time"],
        "valid_until": iso(start + timedelta(days=180)),
        "response": response,
    }
    put_activation(ospp, "lc1", "ProPlus2021", json.dumps(stored))
    assert product_status(ospp, "lc1", "ProPlus2021")["status"] == "LICENSED"
    ospp("install-product", "ProPlus2021", "lc2")
    put_activation(ospp, "lc2", "ProPlus2021", json.dumps(stored))
    assert product_status(ospp, "lc2", "ProPlus2021")["error_code"] == UNTRUSTED


def test_an_old_style_phone_certificate_holds_an_old_installation_id_or_is_refused(ospp: Ospp):
    """Format 1 certificates were made from version 1 IIDs only. One holding a newer IID binds
    the host key by its 32-bit machine tag alone (the CID of a version 2 or 4 IID covers the
    tag of another key): it is refused, even for an activation already stored."""
    import os

    from ospp.core.errors import LicensingError
    from ospp.protocol.crypto import HostKey, b64
    from ospp.protocol.kms import check_certificate
    from ospp.protocol.trust import anchors

    key = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
    ).data()["key"]
    host_key = b64(HostKey(HostKey.generate()).public_raw)
    ospp.install("ProPlus2021")  # a client that trusts the test's authority
    trusted = anchors(ospp.env["OSPP_HOME"], {**os.environ, **ospp.env})
    assert trusted
    check_certificate(legacy_certificate(ospp, key, host_key), trusted, legacy_phone=True)
    for version in (2, 4):
        cert = legacy_certificate(ospp, key, host_key, version)
        with pytest.raises(LicensingError) as refused:
            check_certificate(cert, trusted, legacy_phone=True)
        assert refused.value.code == 0xC004F042 and "damaged" in refused.value.message


def test_phone_certificate_is_bound_to_the_hosts_signing_key(ospp: Ospp):
    """A rogue that copies a genuine phone-activated host's certificate but signs with its own
    key is refused: the CID covers the tag of the genuine key."""
    from ospp.protocol.crypto import HostKey, b64
    from tests.test_kms import RogueHost

    phone_host(ospp)
    with sqlite3.connect(ospp.home / "kms" / "kms.db") as conn:
        genuine = json.loads(conn.execute("SELECT certificate FROM packs").fetchone()[0])
    signer = HostKey(HostKey.generate())
    for cert in (genuine, {**genuine, "host_key": b64(signer.public_raw)}):
        rogue = RogueHost(lambda m, c=cert: signed_answer(signer, c, m))
        try:
            ospp("install-product", "ProPlus2021", "bind")
            ospp(f"/sethst:127.0.0.1:{rogue.port}", "bind")
            ran = ospp("/act", "bind")
            assert ran.code == 1 and "0xC004F042" in ran.out, ran.out
        finally:
            rogue.close()


# -- sites that accept only online-certified hosts ------------------------------------------------


def test_kms_policy_online_only(ospp: Ospp):
    phone_host(ospp)
    h = Host(ospp)
    try:
        for n in range(1, 6):
            client(ospp, f"po{n}", h)
            ospp("/act", f"po{n}")
        assert ospp("/act", "po1").code == 0
        assert ospp("/kms-policy:online-only", "po1").code == 0
        # a stored activation from a phone-certified host no longer counts ...
        st = product_status(ospp, "po1", "ProPlus2021")
        assert st["status"] != "LICENSED" and st["error_code"] == "0xC004F042", st
        assert "online" in st["detail"]
        # ... nor does a new answer from it
        ran = ospp("/act", "po1")
        assert ran.code == 1 and "0xC004F042" in ran.out and "certified by phone" in ran.out
        assert ospp("kms-policy", "ONLINE", "po1").code == 2
        assert ospp("dstatus", "po1", "--json").data()["products"][0]["kms"]["host_policy"] == (
            "online-only"
        )
        # other machines are not affected; 'any' restores the default
        assert product_status(ospp, "po5", "ProPlus2021")["status"] == "LICENSED"
        assert ospp("/kms-policy:any", "po1").code == 0
        assert ospp("/act", "po1").code == 0
        assert product_status(ospp, "po1", "ProPlus2021")["status"] == "LICENSED"
        # an online-certified host is accepted under online-only
        assert ospp("kms", "activate").code == 0
        h.restart()
        ospp(f"/sethst:{h.address}", "po1")
        assert ospp("/kms-policy:online-only", "po1").code == 0
        assert ospp("/act", "po1").code == 0
        assert product_status(ospp, "po1", "ProPlus2021")["status"] == "LICENSED"
    finally:
        h.stop()


@given(
    hs.integers(0, 255),
    hs.integers(0, 2**32 - 1),
    hs.integers(0, 2**60 - 1),
    hs.integers(0, 2**72 - 1),
)
def test_host_iid_round_trip_and_its_message_leaves_out_the_security_value(
    product: int, serial: int, security: int, tag: int
) -> None:
    from ospp.protocol import phone

    iid = phone.InstallationId.for_host(product, serial, security, tag)
    assert len(iid.text()) == 63
    back = phone.InstallationId.parse(iid.text())
    assert back == iid and back.version == 4 and back.host_key_tag == tag
    assert back.proves(security) and not back.proves(security ^ 1)
    other = phone.InstallationId.for_host(product, serial, security ^ 1, tag)
    assert iid.message() == other.message()  # the signed message does not depend on it
    assert (
        iid.message() != phone.InstallationId.for_host(product, serial, security, tag ^ 1).message()
    )


@pytest.mark.parametrize(
    "name",
    [float("nan"), 7, "x" * 100_000, "Lab\x1b]0;owned\x07", ""],
    ids=["NaN", "a number", "100,000 characters", "an escape sequence", "empty"],
)
def test_a_public_key_file_whose_name_is_not_one_is_refused(ospp: Ospp, tmp_path, name):
    good = json.loads(ospp("center", "pubkey").out)
    before = ospp("trust", "list", "--json").data()["anchors"]
    path = tmp_path / "authority.pub.json"
    path.write_text(json.dumps({**good, "name": name}))
    ran = ospp("trust", "add", str(path))
    assert ran.code == 2 and "0x80070057" in ran.out + ran.err and "name" in ran.out, ran.out
    assert ospp("trust", "list", "--json").data()["anchors"] == before


def test_a_public_key_file_saved_with_a_byte_order_mark_is_added(ospp: Ospp, tmp_path):
    """What Notepad or PowerShell 5 (Set-Content -Encoding utf8) writes: UTF-8 after a byte
    order mark, which is not part of the JSON."""
    path = tmp_path / "authority.pub.json"
    path.write_bytes(b"\xef\xbb\xbf" + ospp("center", "pubkey").out.encode())
    ran = ospp("trust", "add", str(path))
    assert ran.code == 0, ran.out + ran.err
    assert len(ospp("trust", "list", "--json").data()["anchors"]) >= 1


def test_an_authority_name_must_be_printable(ospp: Ospp):
    ran = ospp("center", "init", "--name", "Lab\x1b[2J")
    assert ran.code == 2 and "--name" in ran.out + ran.err, ran.out
    assert ospp("center", "init", "--name", "Lab of Contoso").code == 0


def test_fleet_and_rearm_judge_a_machine_by_its_kms_policy_as_dstatus_does(ospp: Ospp):
    """A sealed activation from a phone-certified host on an online-only machine: the seal
    does not cover the policy, so fleet status, the timeline and /rearm must apply it too."""
    at = {"OSPP_NOW": "2026-06-01T00:00:00Z"}
    phone_host(ospp)
    h = Host(ospp, now=at["OSPP_NOW"])
    try:
        for n in range(1, 6):
            ospp("install-product", "ProPlus2021", f"fp{n}", env=at)
            ospp(f"/sethst:{h.address}", f"fp{n}", env=at)
            ospp("/act", f"fp{n}", env=at)
        for n in range(1, 5):  # asked again, now that the host counts five machines
            assert ospp("/act", f"fp{n}", env=at).code == 0
    finally:
        h.stop()
    assert ospp("/kms-policy:online-only", "fp1").code == 0
    dstatus = ospp("dstatus", "fp1", "--json", env=at).data()["products"][0]
    assert dstatus["status"] == "OOB_GRACE" and dstatus["error_code"] == "0xC004F042"
    rows = {r["machine"]: r for r in ospp("fleet", "status", "--json", env=at).data()["rows"]}
    assert (rows["fp1"]["status"], rows["fp1"]["error_code"]) == ("OOB_GRACE", "0xC004F042")
    assert rows["fp2"]["status"] == "LICENSED"
    timeline = ospp("fleet", "timeline", "--json", "--to", "2026-06-01", env=at).data()["points"][0]
    assert timeline.get("LICENSED") == 4 and timeline.get("OOB_GRACE") == 1, timeline
    # 40 days on the licence is out of grace: /rearm restarts it, as for any licence that
    # is not licensed, and only on fp1
    later = {"OSPP_NOW": "2026-07-11T00:00:00Z"}
    assert ospp("dstatus", "fp1", "--json", env=later).data()["products"][0]["status"] == (
        "NOTIFICATIONS"
    )
    sku = _sku("ProPlus2021")
    ran = ospp("/rearm", "fp1", "--json", env=later)
    assert ran.code == 0 and sku in ran.data()["rearmed"], ran.out
    after = ospp("dstatus", "fp1", "--json", env=later).data()["products"][0]
    assert after["status"] == "OOB_GRACE" and after["remaining_grace_days"] >= 29, after
    assert sku not in ospp("/rearm", "fp2", "--json", env=later).data()["rearmed"]


def test_rearm_checks_activations_whose_seal_no_longer_matches(ospp: Ospp, tmp_path):
    """A new trust anchor unseals every activation, so /rearm verifies them in full while
    it writes: it reads the store inside its own transaction (never an internal error)."""
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install("ProPlus2021", "rt1")
    assert ospp("/inpkey:" + key, "rt1", "--act").code == 0
    other = {"OSPP_CENTER_HOME": str(tmp_path / "other-centre")}
    assert ospp("center", "init", env=other).code == 0
    pub = tmp_path / "other.json"
    pub.write_text(ospp("center", "pubkey", env=other).out)
    assert ospp("trust", "add", str(pub)).code == 0
    sku = _sku_mak("ProPlus2021")
    for args in (("/rearm", "rt1", "--json"), ("slmgr", "/rearm", "rt1", "--json")):
        ran = ospp(*args)
        assert ran.code == 0, (args, ran.out)
        assert sku not in ran.data().get("rearmed", []), ran.out  # the MAK licence is licensed
    assert product_status(ospp, "rt1", "ProPlus2021")["status"] == "LICENSED"


# -- keys of small order -----------------------------------------------------------------------

_P = 2**255 - 19
_Y8 = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
# Every encoding of a point of small order, with either sign bit, and the non-canonical
# encodings of the same points (y + p for the y values that leave room below 2**255).
SMALL_ORDER = [
    (y | sign << 255).to_bytes(32, "little")
    for y in (0, 1, _P - 1, _Y8, _P - _Y8, _P, _P + 1)
    for sign in (0, 1)
]
IDENTITY = (1).to_bytes(32, "little")
ANYONE_SIGNS = IDENTITY + bytes(32)  # R = the identity, S = 0: "valid" for every message


def test_keys_of_small_order_are_not_keys():
    """Under a point of small order, R = the identity and S = 0 verify for every message in
    OpenSSL (cryptography); ospp's verification and the authority's check refuse them."""
    from ospp.protocol.crypto import HostKey, verify_ed25519
    from ospp.protocol.edpoint import usable_ed25519_key

    for raw in SMALL_ORDER:
        assert not usable_ed25519_key(raw), raw.hex()
        assert not verify_ed25519(raw, b"any message", ANYONE_SIGNS), raw.hex()
    for _ in range(50):
        genuine = HostKey(HostKey.generate())
        assert usable_ed25519_key(genuine.public_raw)
        assert verify_ed25519(genuine.public_raw, b"m", genuine.sign(b"m"))
    assert not usable_ed25519_key(bytes(31)) and not usable_ed25519_key(bytes(33))


def test_a_host_certified_for_a_key_of_small_order_is_refused(ospp: Ospp):
    """An online certificate for the identity point (as an authority before this check
    would grant one) lets anyone answer with R = identity, S = 0: clients refuse the host,
    and the authority no longer certifies such a key."""
    import uuid
    from pathlib import Path

    from ospp.authority.state import Authority
    from ospp.core.canonical import canonical
    from ospp.core.clock import SystemClock
    from ospp.core.errors import UsageError
    from ospp.protocol.crypto import b64
    from tests.test_kms import RogueHost

    key = ospp(
        "center", "issue-key", "--product", "ProPlus2021", "--channel", "kms-host", "--json"
    ).data()["key"]
    authority = Authority.open(Path(ospp.env["OSPP_CENTER_HOME"]), SystemClock())
    try:
        request = {"key": key, "cmid": str(uuid.uuid4()), "hardware": "00", "nonce": "n"}
        for raw in SMALL_ORDER:
            with pytest.raises(UsageError):
                authority.activate({**request, "host_key": b64(raw)})
        granted = authority.activate({**request, "host_key": b64(bytes(range(32)))})
        licence = {**granted["licence"], "host_key": b64(IDENTITY)}
        cert = {
            "kind": "online",
            "licence": licence,
            "signature": b64(authority.keys.sign(canonical(licence))),
        }
    finally:
        authority.close()

    class Nobody:  # signs nothing: every "signature" is R = identity, S = 0
        def sign(self, message: bytes) -> bytes:
            return ANYONE_SIGNS

    rogue = RogueHost(lambda m: signed_answer(Nobody(), cert, m))
    try:
        ospp("install-product", "ProPlus2021", "so1")
        ospp(f"/sethst:127.0.0.1:{rogue.port}", "so1")
        ran = ospp("/act", "so1")
        assert ran.code == 1 and "0xC004F042" in ran.out and "small order" in ran.out, ran.out
    finally:
        rogue.close()
    assert product_status(ospp, "so1", "ProPlus2021")["status"] == "OOB_GRACE"


def test_an_authority_key_of_small_order_is_not_trusted(ospp: Ospp, tmp_path):
    """A public key file whose Ed25519 key is of small order would let anyone sign licences
    that verify under it: 'trust add' refuses it."""
    from ospp.protocol.crypto import b64

    assert ospp("center", "init").code == 0
    genuine = json.loads(ospp("center", "pubkey").out)
    for raw in SMALL_ORDER[:4]:
        forged = {k: v for k, v in genuine.items() if k != "fingerprint"}
        forged.update(name="anyone", ed25519=b64(raw))
        path = tmp_path / "forged.json"
        path.write_text(json.dumps(forged))
        ran = ospp("trust", "add", str(path))
        assert ran.code != 0 and "small order" in ran.out, ran.out
    names = [a["name"] for a in ospp("trust", "list", "--json").data()["anchors"]]
    assert "anyone" not in names


def test_a_resealed_mak_activation_time_that_is_not_a_time_is_a_store_error(ospp: Ospp):
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install("ProPlus2021", "mt1")
    assert ospp("/inpkey:" + key, "mt1", "--act").code == 0
    sku = _sku_mak("ProPlus2021")
    with sqlite3.connect(ospp.store_file("mt1")) as conn:
        (blob,) = conn.execute("SELECT activation FROM licenses WHERE sku_id=?", (sku,)).fetchone()
    conn.close()
    act = json.loads(blob)
    act["activated_at"] = {"x": "\x1b[2J"}
    reseal(ospp, "mt1", sku, act)
    for args in (("/dstatus", "mt1"), ("fleet", "status", "--json")):
        ran = ospp(*args)
        assert ran.code == 3 and "0x8007000D" in ran.out + ran.err, (args, ran.out)


def test_an_answer_below_the_threshold_kept_as_an_activation_is_not_licensed(
    ospp: Ospp, host: Host
):
    """A host answers a client below its threshold with a signed count under 5: genuine, and
    not an activation. Whoever keeps that answer and stores it as one (the store's owner, or
    a copy of the store) must not get it past a full check or ``--verify``."""
    from datetime import datetime

    from ospp.core.clock import iso
    from ospp.core.endpoint import Endpoint
    from ospp.protocol.kms import VALIDITY
    from ospp.protocol.wire import Connection
    from tests.kmsutil import raw_request

    client(ospp, "low", host)
    ran = ospp("/act", "low")
    assert ran.code == 1 and "0xC004F038" in ran.out, ran.out
    with sqlite3.connect(ospp.store_file("low")) as conn:
        (cmid,) = conn.execute("SELECT value FROM meta WHERE name='cmid'").fetchone()
    request = raw_request(cmid, batch_signatures=True)
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn_:
        response = conn_.call(request)
    assert response["ok"] and response["count"] < 5, response
    when = datetime.fromisoformat(request["client_time"].replace("Z", "+00:00"))
    act = {
        "kind": "kms",
        "host": host.address,
        "count": response["count"],
        "activated_at": request["client_time"],
        "valid_until": iso(when + VALIDITY),
        "request": {n: request[n] for n in ("nonce", "client_time")},
        "response": response,
    }
    sku = _sku("ProPlus2021")
    put_activation(ospp, "low", "ProPlus2021", json.dumps(act))  # not sealed: checked in full
    st = product_status(ospp, "low", "ProPlus2021")
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    assert "threshold" in st["detail"], st
    from ospp.core.paths import ospp_home
    from ospp.machine.seal import seal_key

    seal_key(ospp_home(ospp.env), create=True)  # the owner's key: none was needed until now
    reseal(ospp, "low", sku, act)  # sealed: --verify checks it in full regardless
    assert product_status(ospp, "low", "ProPlus2021")["status"] == "LICENSED"  # the seal's limit
    st = product_status(ospp, "low", "ProPlus2021", "--verify")
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    text = ospp("/dstatus", "low", "--verify").out
    assert UNTRUSTED in text and "---LICENSED---" not in text
