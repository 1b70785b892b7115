"""KMS client activation: find a host, ask it, check what it says, keep the result."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ospp.core.canonical import canonical
from ospp.core.clock import iso
from ospp.core.endpoint import Endpoint, parse_host
from ospp.core.errors import (
    E_CANNOT_USE,
    E_COUNT_LOW,
    E_NO_KMS,
    E_SKEW,
    N_,
    LicensingError,
    NetworkError,
    OsppError,
    UsageError,
)
from ospp.machine.kmspool import REQUEST_TIMEOUT, NotTried, Pool
from ospp.machine.seal import require_key, seal
from ospp.machine.settings import cacheable_host
from ospp.machine.store import Licence, MachineStore
from ospp.protocol import kms, merkle
from ospp.protocol.crypto import unb64, verify_ed25519
from ospp.protocol.trust import Anchors, anchors, require_anchors

if TYPE_CHECKING:
    from ospp.core.catalog import Product

SKEW_HINT = N_(
    "A KMS host and its clients must agree on the time within 4 hours: set the clocks right, "
    "or move both together with the lab clock ('ospp clock'); OSPP_NOW moves one process only."
)
# The fields of a KMS answer outside its signed body.
_UNSIGNED = frozenset({"v", "ok", "signature", "certificate", "proof"})
# The largest count or interval (minutes) an answer may carry: a 32-bit signed integer, as
# the Software Licensing Service keeps them.
_MAX_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class Outcome:
    host: str
    count: int
    valid_until: datetime
    renewed: bool


def _verify(
    response: dict[str, Any],
    request: dict[str, Any],
    lic: Licence,
    trusted: Anchors,
    where: str,
    stored: bool = False,
) -> tuple[Product, str]:
    """Steps a client takes before believing a KMS host. Returns (host product, host key).

    ``stored``: checking an activation stored earlier, which may hold an old-style phone
    certificate; a new answer never may.
    """
    # 1. the host's certificate chains to an authority this client trusts
    try:
        product, host_key = kms.check_certificate(
            response.get("certificate"), trusted, legacy_phone=stored
        )
    except LicensingError as exc:
        raise LicensingError(
            exc.code,
            f"the KMS host at {where} cannot be used: {exc.message}",
            "A KMS host must be activated with a trusted activation authority; "
            "check /sethst or the DNS records.",
        ) from exc
    # 2. the response is signed by the certified host key: on its own (version 1), or with its
    # batch's Merkle root when it carries an inclusion proof (docs/PROTOCOL.md)
    body = canonical({k: v for k, v in response.items() if k not in _UNSIGNED})
    message: bytes | None = body
    if "proof" in response:
        message = merkle.proof_message(body, response["proof"])
    try:
        ok = message is not None and verify_ed25519(
            unb64(host_key), message, unb64(str(response.get("signature")))
        )
    except ValueError:
        ok = False
    if not ok:
        raise LicensingError(
            E_CANNOT_USE, f"the KMS host at {where} sent a response its key did not sign"
        )
    # 3. it answers this request, not an earlier one (replay)
    for name in ("nonce", "cmid", "client_time", "sku_id"):
        if response.get(name) != request[name]:
            raise LicensingError(
                E_CANNOT_USE,
                f"the KMS host at {where} answered another request ({name} differs)",
            )
    # 4. its key may activate this product
    if not kms.covers(product, lic.sku.product):
        raise LicensingError(
            E_CANNOT_USE,
            f"the KMS host at {where} holds a {product.id} key, which cannot "
            f"activate {lic.sku.product.id}",
        )
    # 5. the numbers the client keeps are whole numbers (a host signs what it means: this
    # catches a broken host, whose answer would otherwise fail later, half stored)
    for name in ("count", "activation_interval", "renewal_interval"):
        value = response.get(name)
        if type(value) is not int or not 0 <= value <= _MAX_NUMBER:
            raise LicensingError(
                E_CANNOT_USE,
                f"the KMS host at {where} sent a malformed answer: its {name} is not a whole "
                f"number from 0 to {_MAX_NUMBER}",
            )
    return product, host_key


def verify_stored(act: Mapping[str, Any], lic: Licence, cmid: str, trusted: Anchors) -> str | None:
    """Why a stored KMS activation is not valid on this machine, or None (status reads).

    The response is checked against what this machine knows, never against itself: this
    machine's CMID, this licence's SKU, and the request the client stored when it asked (its
    nonce and client time). A row copied from another machine or another licence fails here.
    """
    response = act.get("response")
    if not isinstance(response, dict):
        return "the stored KMS activation is damaged"
    asked = act.get("request")
    if asked is None:
        # Stored before requests were kept: nonce and client time can only be taken from the
        # signed response; the CMID and SKU are still this machine's own.
        asked = {n: response.get(n) for n in ("nonce", "client_time")}
    if not isinstance(asked, Mapping):
        return "the stored KMS activation is damaged"
    request = {
        "nonce": asked.get("nonce"),
        "client_time": asked.get("client_time"),
        "cmid": cmid,
        "sku_id": lic.sku.sku_id,
    }
    try:
        _verify(response, request, lic, trusted, str(act.get("host")), stored=True)
    except LicensingError as exc:
        if response.get("cmid") != cmid or response.get("sku_id") != lic.sku.sku_id:
            return f"the KMS activation was issued for another machine or licence: {exc.message}"
        return exc.message
    try:
        valid = datetime.fromisoformat(str(response["client_time"]).replace("Z", "+00:00"))
        until = iso(valid + kms.VALIDITY)
    except (ValueError, OverflowError):
        return "the stored KMS activation is damaged (its client time is not a time)"
    if act.get("valid_until") != until:
        return "the stored KMS activation was altered (validity does not match the signed time)"
    if act.get("count") != response.get("count"):
        return "the stored KMS activation was altered (count does not match the signed one)"
    if response["count"] < kms.THRESHOLD:  # a whole number: checked by _verify
        # a genuine answer, but one that activated nothing: the client never stores it
        return (
            f"the stored KMS activation is not one: the host counted {response['count']} "
            f"machine(s), below its threshold of {kms.THRESHOLD}"
        )
    if act.get("activated_at") != response.get("client_time"):
        return "the stored KMS activation was altered (its time does not match the signed one)"
    return None


def _hosts(
    store: MachineStore, environ: Mapping[str, str], cached: bool = True, pool: Pool | None = None
) -> tuple[list[Endpoint], str, dict[str, str]]:
    """Hosts to try in order, how they were chosen, and the DNS name of each (by address).
    ``cached``: False passes over the cached host (discovery, as if there were none); with a
    ``pool``, DNS answers are shared with the other machines of its pass."""
    settings = store.kms()
    if settings.host:
        return [Endpoint(settings.host, settings.port)], "KMS machine registry override", {}
    if cached and settings.caching and settings.cached:
        host = parse_host(settings.cached, kms.DEFAULT_PORT, "cached KMS host")
        return [host], "cached host", {}
    from ospp.dns import discovery

    answers = pool.answers() if pool is not None else None
    hosts, names = discovery.find_hosts(settings.lookup_domain, environ, answers)
    return hosts, "DNS", names


def _call(endpoint: Endpoint, request: dict[str, Any], pool: Pool | None) -> dict[str, Any]:
    """Send one request: over a new connection, or over the pool's one to that host."""
    from ospp.protocol.wire import Connection

    if pool is not None:
        return pool.call(endpoint, request)
    with Connection(endpoint, "KMS host", REQUEST_TIMEOUT) as conn:
        return conn.call(request)


def activate(
    store: MachineStore,
    lic: Licence,
    environ: Mapping[str, str],
    status: str,
    pool: Pool | None = None,
    cached: bool = True,
    skipped: NotTried | None = None,
    tried_before: Sequence[str] = (),
) -> Outcome:
    """One KMS activation or renewal of ``lic``; records every attempt in /dhistorykms.

    With a ``pool``, connections are kept open and reused for the next activation, and a host
    that stopped answering within this pass is not tried again for a while (:class:`NotTried`:
    nothing is sent or recorded for it). ``cached``: False passes over the cached host;
    ``skipped``: the cached host was not tried, so a discovery that finds no host is that, not
    this machine's failure (nothing recorded either); ``tried_before``: the cached host was
    tried and failed (said with the hosts tried after it)."""
    # a damaged seal key stops it before the host counts this machine
    require_key(store.home, create=False)
    settings = store.settings()
    cmid = settings["cmid"]
    try:
        hosts, how, dns_names = _hosts(store, environ, cached, pool)
    except UsageError:  # the environment is malformed (OSPP_DNS, OSPP_RESOLV_CONF): bad input
        raise  # changes nothing, not even the history of attempts
    except OsppError as exc:
        if skipped is not None:  # nothing was sent from this machine: nothing to record
            raise skipped from exc
        _record(store, lic, exc.code, exc.message, None)
        raise
    tried: list[str] = []
    not_tried: list[NotTried] = []
    last_error: OsppError | None = None
    for endpoint in hosts:
        where = str(endpoint)
        request = {
            "op": "kms-activate",
            "app_id": lic.sku.product.application_id,
            "sku_id": lic.sku.sku_id,
            "cmid": cmid,
            "nonce": secrets.token_hex(16),
            "client_time": iso(store.clock.now()),
            "license_status": status,
            "workstation": store.name,
            "required_count": kms.THRESHOLD,
            # One signature per batch of answers, each with its inclusion proof: the host
            # signs less (docs/PROTOCOL.md). Answers signed on their own are accepted too.
            "batch_signatures": True,
        }
        try:
            response = _call(endpoint, request, pool)
        except NotTried as exc:  # nothing sent: nothing to record, the cache stays
            not_tried.append(exc)
            continue
        except NetworkError as exc:
            tried.append(f"{where} ({exc.message.split(': ', 1)[-1]})")
            _record(store, lic, E_NO_KMS, exc.message, where)
            last_error = exc
            _forget_cached(store, how)
            continue
        adopted: dict[str, str] = {}
        try:
            if response.get("ok") is not True:
                code = int(response.get("code", E_CANNOT_USE))  # reached: not "no KMS"
                raise LicensingError(
                    code,
                    f"the KMS host at {where} refused: "
                    f"{response.get('message') or 'no reason given'}",
                    SKEW_HINT if code == E_SKEW else None,
                )
            trusted = require_anchors(anchors(store.home, environ))
            _verify(response, request, lic, trusted, where)
            if settings.get("kms_policy") == "online-only" and (
                response["certificate"].get("kind") != "online"
            ):
                raise LicensingError(
                    E_CANNOT_USE,
                    f"the KMS host at {where} is certified by phone, and this machine accepts "
                    "only hosts certified online",
                    "Activate the KMS host online (ospp kms activate), or allow phone-certified "
                    "hosts with /kms-policy:any.",
                )
            # A genuine answer: take its intervals and remember the host, even below threshold
            # (written with the outcome, in one transaction).
            adopted = _adopted(
                store,
                response,
                None if how == "KMS machine registry override" else where,
                dns_names.get(where),
            )
            count = int(response["count"])
            if count < kms.THRESHOLD:
                raise LicensingError(
                    E_COUNT_LOW,
                    f"the KMS host at {where} counts {count} machine(s); it activates from "
                    f"{kms.THRESHOLD}",
                    "The product stays in grace and retries every activation interval; run "
                    "'ospp service' to do what the licensing service would.",
                )
        except OsppError as exc:
            _record(store, lic, exc.code, exc.message, where, adopted)
            raise
        now_iso = str(response["client_time"])
        valid_until = datetime.fromisoformat(now_iso.replace("Z", "+00:00")) + kms.VALIDITY
        renewed = bool(lic.activation and lic.activation.get("kind") == "kms")
        activation = seal(
            store,
            lic,
            {
                "kind": "kms",
                "host": where,
                "count": count,
                "activated_at": now_iso,
                "valid_until": iso(valid_until),
                "request": {n: request[n] for n in ("nonce", "client_time")},
                "response": response,
            },
            environ,
        )
        try:
            with store.write() as conn_:
                for name, value in adopted.items():
                    store.set_setting(conn_, name, value)
                store.set_activation_of(conn_, lic, activation)  # the key not changed meanwhile
                store.record(
                    conn_,
                    "kms",
                    0,
                    f"{'renewed' if renewed else 'activated'}, count {count}",
                    lic.sku,
                    where,
                )
                store.bump(conn_)
        except LicensingError as exc:  # the key changed while the host was asked: said too
            _record(store, lic, exc.code, exc.message, where, adopted)
            raise
        return Outcome(where, count, valid_until, renewed)
    if how == "cached host":
        # The host that worked last time did not answer: forget it and discover again (not
        # tried in this pass: discover again, and keep it for the next).
        skipped_now = not_tried[0] if not_tried else None
        if skipped_now is not None and pool is not None and pool.closed:
            raise skipped_now  # the pass was stopped: no DNS query either
        return activate(store, lic, environ, status, pool, not skipped_now, skipped_now, tried)
    tried = [*tried_before, *tried]
    if not_tried and not tried:  # nothing was sent from this machine
        raise not_tried[0]
    silent = [f"not tried: {n.where}, silent earlier in this run" for n in not_tried]
    raise NetworkError(
        E_NO_KMS,
        "no KMS host could be contacted; tried " + "; ".join(tried + silent)
        if tried
        else "no KMS host could be contacted",
        "Run /dhistorykms for each attempt; check /sethst, the port, and the host.",
    ) from last_error


def _record(
    store: MachineStore,
    lic: Licence,
    code: int,
    detail: str,
    host: str | None,
    settings: Mapping[str, str] | None = None,
) -> None:
    with store.write() as conn:
        for name, value in (settings or {}).items():
            store.set_setting(conn, name, value)
        store.record(conn, "kms", code, detail, lic.sku, host)


def _adopted(
    store: MachineStore, response: dict[str, Any], discovered: str | None, dns_name: str | None
) -> dict[str, str]:
    """The host's intervals (from a verified response), a discovered host to cache, and the DNS
    name of the host that answered (DiscoveredKeyManagementServiceMachineName, the /dstatus
    line 'KMS machine name from DNS')."""
    low, high = kms.INTERVAL_RANGE
    values = {
        name: str(min(high, max(low, int(response[name]))))
        for name in ("activation_interval", "renewal_interval")
    }
    # A target only the system's resolver knows is tried by its name as DNS gave it; one the
    # store would read as damaged (kms_1.example, say) is used, not cached.
    if discovered and store.kms().caching and cacheable_host(discovered):
        values["kms_cached_host"] = discovered
    if dns_name:
        values["kms_dns_host"] = dns_name
    return values


def _forget_cached(store: MachineStore, how: str) -> None:
    if how == "cached host":
        with store.write() as conn:
            store.set_setting(conn, "kms_cached_host", "")
