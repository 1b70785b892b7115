"""Trust promises under attack: copied and re-sealed activations, what a KMS host discloses."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Ospp
from tests.kmsutil import Host, client, make_host

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
    found: list[dict[str, Any]] = ran.json()["products"]
    return next(p for p in found if p["product"] == product)


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


def test_stored_request_must_match_the_signed_response(ospp: Ospp, host: Host):
    activate_five(ospp, host, "r")
    act = json.loads(activation_row(ospp, "r1", "ProPlus2021"))
    assert act["request"]["nonce"] == act["response"]["nonce"]
    act["request"]["nonce"] = "0" * 32
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
    fooled = ospp("dstatus", "s1", "--json", env=later).json()["products"][0]
    assert fooled["status"] == "LICENSED"
    for flags in (
        ("dstatus", "s1", "--verify", "--json"),
        ("dstatusall", "s1", "--verify", "--json"),
    ):
        ran = ospp(*flags, env=later)
        st = next(p for p in ran.json()["products"] if p["sku_id"] == sku)
        assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    text = ospp("/dstatus", "s1", "--verify", env=later).out
    assert UNTRUSTED in text and "---LICENSED---" not in text
    # a genuine activation passes --verify
    assert product_status(ospp, "s2", "ProPlus2021", "--verify")["status"] == "LICENSED"


def test_resealed_mak_signature_is_caught_by_verify(ospp: Ospp):
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").json()["key"]
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
    assert ospp("dstatus", "m1", "--json").json()["products"][0]["status"] == "LICENSED"
    ran = ospp("dstatus", "m1", "--verify", "--json")
    st = ran.json()["products"][0]
    assert st["status"] != "LICENSED" and st["error_code"] == UNTRUSTED, st
    assert "altered" in st["detail"]
