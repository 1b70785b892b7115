"""The shapes several commands' ``--json`` reports share (a licence as /dstatus shows it, the
lab clock, the licensing service...), published once under ``$defs`` and referred to by
``ref(name)``; the vocabulary is in :mod:`ospp.cli.reports`."""

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

SHARED: dict[str, Schema] = {
    # one licence (SKU) on a machine as /dstatus shows it
    "licence": obj(
        sku_id=string("The SKU (licence) id, a GUID."),
        product_id=string("The catalog product id (ProPlus2021)."),
        channel=string("mak, kms-client, kms-host..."),
        license_name=string("LICENSE NAME as /dstatus prints it."),
        license_description=string("LICENSE DESCRIPTION as /dstatus prints it."),
        status=string("LICENSED, OOB_GRACE, OOT_GRACE, NOTIFICATIONS, UNLICENSED..."),
        error_code=nullable(string("The ERROR CODE line: a status code, not a failure.")),
        error_code_int=nullable(integer()),
        error_description=nullable(string()),
        detail=nullable(string("Why, in words, when something is wrong.")),
        remaining_grace_minutes=nullable(integer()),
        remaining_grace_days=nullable(integer()),
        expires_at=nullable(time("End of grace, or of the KMS activation's validity.")),
        notifications=boolean("Whether the user is being reminded (notification mode)."),
        installed_at=time(),
        grace_started_at=time(),
        key_last5=nullable(string("Last 5 characters of the installed key; null: no key.")),
        activated_at=nullable(time()),
        activation_type=nullable(string("How it was activated: mak, kms, phone...")),
        kms=nullable(ref("kms_settings", "A keyed KMS client's settings; else null.")),
        product_key_id=string("The PRODUCT ID line (00339-10000-00000-AA718)."),
    ),
    # one licence pack of a KMS host (kms status)
    "kms_pack": obj(
        product_id=string(),
        application_id=string(),
        group=string("The application group in words (Office 2013 and later)."),
        key_last5=string(),
        activated=boolean(),
        certified=nullable(string("online, phone...; null: not activated.")),
        attention=nullable(string()),
        activated_at=nullable(time()),
        epid=nullable(string()),
        current_count=integer(),
    ),
    # a product key the authority issued (center keys, block, extend)
    "key_record": obj(
        serial=integer("The key id 'center block' and 'center extend' take."),
        product_id=string(),
        channel=string(),
        key_last5=string(),
        limit=integer("Activations the key allows."),
        used=integer(),
        remaining=integer(),
        blocked=boolean(),
        created_at=time(),
    ),
    # the clock ospp reads (clock show, and every clock command after its change)
    "clock": obj(
        ("moved_by_seconds",),
        now_at=time("The time every command uses now."),
        source=string("OSPP_NOW, lab clock or real time."),
        ospp_now=nullable(string("OSPP_NOW as set (a time or an offset such as +7d).")),
        real_time_at=time(),
        clock_file=string(),
        lab_clock=nullable(
            obj(
                now_at=time(),
                frozen=boolean(),
                offset_seconds=integer("How far the lab clock is from real time."),
            )
        ),
        moved_by_seconds=integer("clock advance only: how far it moved the lab clock."),
    ),
    # the KMS host's DNS publishing settings (kms dns set, enable, disable)
    "dns_publishing": obj(
        enabled=boolean(),
        server=string(),
        domain=string(),
        hostname=string(),
        addresses=array(string()),
        ttl_seconds=integer(),
        priority=integer(),
        weight=integer(),
        interval_hours=number(),
        extra=array(string("DOMAIN[,PRIORITY[,WEIGHT]]")),
        tsig_name=string(),
        tsig_algorithm=string(),
        tsig_secret=string("(set) or empty: the secret is never shown."),
    ),
    # one licence's activation (act, inpkey --act): MAK online or KMS
    "activation_result": obj(
        optional=("error", "kms_host", "count", "expires_at"),
        sku_id=string(),
        product_id=string(),
        ok=boolean(),
        error=ref("error", "Why this licence was not activated."),
        kms_host=string("The KMS host that activated it (KMS only)."),
        count=integer("The count the KMS host reported (KMS only)."),
        expires_at=time("When the KMS activation runs out unless renewed (KMS only)."),
    ),
    # /inslic and slmgr /ilc
    "licence_file": obj(
        machine=string(),
        licence_file=string("The path as given."),
        product_id=nullable(
            string(
                "The product the file's name gives; null for a licence file of no one "
                "product (client-issuance-*, pkeyconfig-*), which changes nothing."
            )
        ),
        installed=array(string(), "SKU ids of the licences added (empty: already there)."),
    ),
    # a client's KMS settings (/dstatus, and every command that changes them)
    "kms_settings": obj(
        activation_type=string("KMS, Token or All (ospp /actype)."),
        host_override=nullable(string("/sethst")),
        port=integer(),
        lookup_domain=nullable(string("/skms-domain")),
        discovered_host=nullable(string("The KMS host that answered, found through DNS.")),
        cached_host=nullable(string()),
        activation_interval_minutes=integer(),
        renewal_interval_minutes=integer(),
        host_caching=boolean(),
        host_policy=string("any or online-only."),
    ),
    # a licence as slmgr /dli and /dlv show it
    "slmgr_licence": obj(
        activation_id=string("The SKU id (slmgr's Activation ID)."),
        product_id=string(),
        name=string(),
        description=string(),
        partial_product_key=nullable(string()),
        license_status=integer("slmgr's LicenseStatus number (1 Licensed, 2 grace...)."),
        license_status_text=string(),
        status=string(),
        grace_minutes=integer(),
        grace_days=integer(),
        expires_at=nullable(time()),
        notification_reason=nullable(string()),
        kms_client=nullable(
            obj(
                cmid=string(),
                registered_kms_machine=nullable(string()),
                registered_kms_port=integer(),
                kms_lookup_domain=nullable(string()),
                kms_machine_from_dns=nullable(string()),
                kms_machine_ip_address=nullable(string()),
                kms_machine_extended_pid=nullable(string()),
                activation_interval_minutes=integer(),
                renewal_interval_minutes=integer(),
                host_caching=boolean(),
            )
        ),
    ),
    # the KMS host's own licence as slmgr /dli and /dlv show it
    "slmgr_host": obj(
        optional=("installation_id",),
        activation_id=string(),
        product_id=string(),
        name=string(),
        description=string(),
        application_id=string(),
        partial_product_key=nullable(string()),
        license_status=integer(),
        license_status_text=string(),
        activated=boolean(),
        epid=nullable(string()),
        current_count=integer(),
        port=integer(),
        dns_publishing=boolean(),
        priority=string(),
        activation_interval_minutes=integer(),
        renewal_interval_minutes=integer(),
        requests_total=integer(),
        requests_failed=integer(),
        requests=mapping(integer("Requests by the licence status the client reported.")),
        installation_id=string("With /dlv."),
        is_kms_host=boolean("Always true: this is the KMS host's licence."),
    ),
    # the KMS host's settings after an slmgr option changed one
    "slmgr_host_settings": obj(
        is_kms_host=boolean("Always true: the settings are the KMS host's."),
        port=integer(),
        dns_publishing=boolean(),
        priority=string(),
        activation_interval_minutes=integer(),
        renewal_interval_minutes=integer(),
    ),
    # the simulated Office Software Protection service
    "service": obj(
        name=string(),
        start_mode=string(),
        state=string(),
        started_at=nullable(time()),
    ),
}
