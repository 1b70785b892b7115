"""What the KMS host's commands (``ospp kms ...``) report under ``data`` with ``--json``; the
vocabulary and how it is published are in :mod:`ospp.cli.reports`."""

from __future__ import annotations

from ospp.cli.schema import (
    Schema,
    array,
    boolean,
    integer,
    mapping,
    nullable,
    number,
    obj,
    ref,
    string,
    time,
)

KMS: dict[str, Schema] = {
    "kms activate": obj(
        product_id=string("The (first) pack activated."),
        epid=string(),
        packs=array(obj(product_id=string(), epid=string(), key_last5=string())),
        optional=("packs",),
    ),
    "kms clients": obj(
        clients=array(
            obj(
                application_id=string(),
                cmid=string(),
                sku_id=string(),
                workstation=string(),
                first_seen_at=time(),
                last_seen_at=time(),
                requests=integer(),
            )
        )
    ),
    "kms dinstid": obj(
        installation_id=string("The (first) pack's installation ID."),
        groups=array(string()),
        packs=array(
            obj(
                product_id=string(),
                key_last5=string(),
                installation_id=string(),
                groups=array(string()),
            ),
            "Every pack's, on a host with several and no --key.",
        ),
        optional=("packs",),
    ),
    "kms dns disable": ref("dns_publishing"),
    "kms dns enable": ref("dns_publishing"),
    "kms dns publish": obj(
        published=array(string("What was published, in words: a record set a line.")),
        not_published=array(
            string(
                "What could not be published, and why: the addresses of a host name outside "
                "every zone updated."
            )
        ),
    ),
    "kms actcid": obj(product_id=string(), epid=string(), key_last5=string()),
    "kms dns records": obj(records=array(string())),
    "kms dns set": ref("dns_publishing"),
    "kms install-key": obj(
        product_id=string(),
        key_last5=string(),
        application_id=string("The application group of the licence pack."),
        replaced=nullable(obj(product_id=string(), key_last5=string())),
    ),
    "kms uninstall-key": obj(
        product_id=string(),
        key_last5=string(),
        application_id=string(),
        packs_left=integer(),
    ),
    "kms ping": obj(
        kms_host=string(),
        epid=string(),
        product_id=nullable(
            string(
                "The host key's product, from its certificate; null when no authority is "
                "trusted (the certificate was not checked)."
            )
        ),
        trusted=boolean(),
        round_trip_ms=number(),
    ),
    "kms set": obj(
        activation_interval_minutes=integer(),
        renewal_interval_minutes=integer(),
        max_clients=integer("The most client machines the host keeps."),
    ),
    "kms status": obj(
        packs=array(ref("kms_pack"), "One licence pack per application group."),
        key_last5=nullable(string("The first pack's (the newest group).")),
        activated=boolean(),
        certified=nullable(string()),
        attention=nullable(string()),
        activated_at=nullable(time()),
        epid=nullable(string()),
        current_count=mapping(integer()),
        stored_clients=integer(),
        max_clients=integer("The most client machines the host keeps (kms set --max-clients)."),
        port=integer("Where the host listens, or listened last; else configured_port."),
        configured_port=integer(
            "Where kms serve listens when --listen names no port (slmgr /sprt; 1688)."
        ),
        priority=string("normal or low (slmgr /spri, /cpri)."),
        dns_publishing=boolean(),
        dns_last_publish=nullable(obj(published_at=time(), result=string())),
        requests_total=integer(),
        requests_failed=integer(),
        requests_by_status=mapping(integer()),
        activation_interval_minutes=integer(),
        renewal_interval_minutes=integer(),
    ),
}
