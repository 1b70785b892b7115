"""What each command reports under ``data`` with ``--json``: one definition per command.

Field names follow one vocabulary (docs/JSON.md): times are ``*_at`` in ISO 8601 UTC ending
in Z, durations carry their unit, ``product_id`` is a catalog product id (ProPlus2021),
``sku_id`` a licence's SKU, ``products`` a list of objects, and a failure inside a report is
the one error object (``ref("error")``) of the envelope. :mod:`ospp.cli.schema` turns these
into docs/schema/; the tests check every output against them with no field left undeclared.
"""

from __future__ import annotations

import json

from ospp.cli.schema import (
    Schema,
    any_command,
    array,
    boolean,
    envelope,
    file_name,
    integer,
    mapping,
    nullable,
    number,
    obj,
    one_of,
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

DATA: dict[str, Schema] = {
    "act": obj(
        machine=string(),
        activated=integer(),
        products=array(ref("activation_result")),
    ),
    "actcid": obj(machine=string(), sku_id=string(), product_id=string()),
    "actype": obj(machine=string(), kms=ref("kms_settings")),
    "cachst": obj(machine=string(), kms=ref("kms_settings")),
    "center block": ref("key_record"),
    "center confirm": obj(cid=string(), groups=array(string())),
    "center confirm-batch": obj(confirmed=integer(), total=integer(), outfile=string()),
    "center extend": ref("key_record"),
    "center init": obj(
        optional=("database",),
        name=string(),
        fingerprint=string(),
        public_key_file=string(),
        database=string(),
    ),
    "center issue-key": obj(key=string(), product_id=string(), channel=string()),
    "center keys": obj(keys=array(ref("key_record"))),
    "center migrate": obj(backend=string(), store=string(), from_=integer(), to=integer()),
    "center phone": obj(installation_id=string(), confirmation_id=string(), call_log=string()),
    "ckms-domain": obj(machine=string(), kms=ref("kms_settings")),
    "clock advance": ref("clock"),
    "clock freeze": ref("clock"),
    "clock reset": ref("clock"),
    "clock run": ref("clock"),
    "clock set": ref("clock"),
    "clock show": ref("clock"),
    "dcmid": obj(machine=string(), cmid=string()),
    "ddescr": obj(code=string(), code_int=integer(), description=string()),
    "dhistoryacterr": obj(
        machine=string(),
        event_id=integer(),
        entries=array(
            obj(
                sku_id=string(),
                target=nullable(string()),
                code=string(),
                code_int=integer(),
                detail=string(),
                written_at=time(),
            )
        ),
    ),
    "dhistorykms": obj(
        machine=string(),
        event_id=integer(),
        entries=array(
            obj(
                sku_id=string(),
                target=nullable(
                    string(
                        "The KMS host asked (HOST:PORT); null when none was found to ask "
                        "(DNS discovery failed)."
                    )
                ),
                code=string(),
                code_int=integer(),
                detail=string(),
                written_at=time(),
            )
        ),
    ),
    "dinstid": obj(
        machine=string(),
        products=array(
            obj(
                sku_id=string(),
                product_id=string(),
                license_name=string(),
                installation_id=string(),
                groups=array(string()),
            )
        ),
    ),
    "dnsdiag": obj(
        machine=string(),
        nameservers=array(string()),
        source=string(),
        domains=array(
            obj(
                domain=string(),
                name=string(),
                outcome=string(),
                detail=string(),
                records=array(
                    obj(priority=integer(), weight=integer(), port=integer(), target=string())
                ),
                fix=nullable(string()),
            )
        ),
        order=array(string()),
        contacted=array(
            obj(target=string(), address=string(), result=string(), fix=nullable(string()))
        ),
        answered=nullable(string()),
    ),
    "dstatus": obj(
        optional=("now_at", "reminders"),
        machine=string(),
        user_operations=string(),
        service=ref("service"),
        now_at=time(),
        products=array(ref("licence")),
        reminders=array(obj(product_id=string(), kind=string(), grace_days_left=integer())),
    ),
    "dstatusall": obj(
        machine=string(),
        user_operations=string(),
        service=ref("service"),
        now_at=time(),
        products=array(ref("licence")),
        reminders=array(obj(product_id=string(), kind=string(), grace_days_left=integer())),
    ),
    "duserops": obj(machine=string(), user_operations=string()),
    "fleet act": obj(
        summary=mapping(integer()),
        failures=array(
            obj(machine=string(), product_id=string(), action=string(), error=ref("error"))
        ),
    ),
    "fleet create": obj(
        first=string(), last=string(), product_id=string(), summary=mapping(integer())
    ),
    "fleet export": obj(machines=integer(), file=string()),
    "fleet import": obj(summary=mapping(integer())),
    "fleet inpkey": obj(summary=mapping(integer())),
    "fleet remove": obj(summary=mapping(integer())),
    "fleet status": obj(
        rows=array(
            obj(
                machine=string(),
                product_id=nullable(string()),
                status=string(),
                error_code=nullable(string()),
                key_last5=nullable(string()),
                remaining_days=nullable(integer()),
                last_activated_at=nullable(time()),
                kms_host=nullable(string()),
                error=nullable(ref("error", "An ERROR row: why the store could not be read.")),
            )
        ),
        summary=mapping(integer()),
    ),
    "fleet timeline": obj(
        states=array(string("The licence statuses counted, in order.")),
        points=array(
            {
                **obj(counted_at=time("The day counted.")),
                "additionalProperties": integer("Licences in this status on that day."),
            }
        ),
    ),
    "hardware change": obj(machine=string(), hash=string()),
    "hardware show": obj(
        machine=string(),
        components=obj(
            volume_serial=string(),
            nic_mac=string(),
            optical_drive=string(),
            display_adapter=string(),
            cpu_serial=string(),
            disk=string(),
            scsi_adapter=string(),
            ide_controller=string(),
            cpu_model=string(),
            ram_size=string(),
        ),
        dockable=boolean(),
        hash=string(),
    ),
    "inpkey": obj(
        activation=array(ref("activation_result", "With --act: what activating did.")),
        machine=string(),
        product_id=string(),
        channel=string(),
        sku_id=string(),
        license_name=string(),
        key_last5=string(),
    ),
    "inslic": ref("licence_file"),
    "install-product": obj(machine=string(), product_id=string(), installed=array(string())),
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
    "kms dns publish": obj(published=array(string("What was published, in words."))),
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
    "kms-policy": obj(machine=string(), kms=ref("kms_settings")),
    "machines": obj(machines=array(string())),
    "osppsvcauto": obj(machine=string(), changed=boolean(), service=ref("service")),
    "osppsvcrestart": obj(machine=string(), service=ref("service")),
    "products": obj(
        products=array(
            obj(
                product_id=string(),
                name=string(),
                gvlk=string(),
                application_id=string(),
                skus=mapping(string()),
            )
        )
    ),
    "puserops": obj(machine=string(), user_operations=string()),
    "rearm": obj(machine=string(), rearmed=array(string()), rearms_left=integer()),
    "remhst": obj(machine=string(), kms=ref("kms_settings")),
    "service": obj(
        optional=("services", "actions", "summary", "reminders"),
        services=array(
            obj(
                machine=string(),
                name=string(),
                start_mode=string(),
                state=string(),
                started_at=nullable(time()),
            )
        ),
        actions=array(
            obj(
                optional=("ok", "kms_host", "count", "error"),
                machine=string(),
                product_id=nullable(
                    string("Null when the machine's store could not be read (see error).")
                ),
                status=string(),
                action=nullable(
                    string(
                        "What was due (activate, renew), or null; read when the machine's "
                        "store could not be read."
                    )
                ),
                ok=boolean(),
                kms_host=string("The KMS host that answered."),
                count=integer(),
                error=ref("error"),
            )
        ),
        summary=mapping(integer()),
        reminders=array(
            obj(machine=string(), product_id=string(), kind=string(), grace_days_left=integer()),
            "What each machine's user is told; absent when more than 100 machines were served "
            "(ospp service --notify tells them).",
        ),
    ),
    "sethst": obj(machine=string(), kms=ref("kms_settings")),
    "setprt": obj(machine=string(), kms=ref("kms_settings")),
    "skms-domain": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr act-type": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr ato": obj(
        optional=("machine", "is_kms_host", "kms_host", "count", "expires_at", "epid"),
        machine=string("The simulated machine; absent when the KMS host was meant."),
        is_kms_host=boolean("Present (true) when the command acted on the KMS host."),
        activation_id=string(),
        kms_host=string("The KMS host that activated the licence."),
        count=integer("The count the KMS host reported."),
        expires_at=time("When the KMS activation runs out unless renewed."),
        epid=nullable(string("The KMS host's own ePID, once activated.")),
    ),
    "slmgr atp": obj(
        optional=("machine", "is_kms_host"),
        machine=string("The simulated machine; absent when the KMS host was meant."),
        is_kms_host=boolean("Present (true) when the command acted on the KMS host."),
        activation_id=string(),
    ),
    "slmgr cdns": ref("slmgr_host_settings"),
    "slmgr ckhc": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr ckms": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr ckms-domain": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr cpky": obj(machine=string()),
    "slmgr cpri": ref("slmgr_host_settings"),
    "slmgr dli": obj(
        machine=string(), products=array(one_of(ref("slmgr_licence"), ref("slmgr_host")))
    ),
    "slmgr dlv": obj(
        machine=string(), products=array(one_of(ref("slmgr_licence"), ref("slmgr_host")))
    ),
    "slmgr dti": obj(
        optional=("machine", "is_kms_host"),
        machine=string("The simulated machine; absent when the KMS host was meant."),
        is_kms_host=boolean("Present (true) when the command acted on the KMS host."),
        activation_id=string(),
        installation_id=string(),
    ),
    "slmgr ipk": obj(
        optional=("machine", "is_kms_host"),
        product_id=string(),
        channel=string(),
        activation_id=string(),
        key_last5=string(),
        machine=string("The simulated machine; absent when the KMS host was meant."),
        is_kms_host=boolean("Present (true) when the command acted on the KMS host."),
    ),
    "slmgr ilc": ref("licence_file"),
    "slmgr rearm": obj(machine=string(), rearmed=array(string()), rearms_left=integer()),
    "slmgr sai": ref("slmgr_host_settings"),
    "slmgr sdns": ref("slmgr_host_settings"),
    "slmgr skhc": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr skms": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr skms-domain": obj(machine=string(), kms=ref("kms_settings")),
    "slmgr spri": ref("slmgr_host_settings"),
    "slmgr sprt": ref("slmgr_host_settings"),
    "slmgr sri": ref("slmgr_host_settings"),
    "slmgr upk": obj(
        optional=("machine", "is_kms_host"),
        machine=string("The simulated machine; absent when the KMS host was meant."),
        is_kms_host=boolean("Present (true) when the command acted on the KMS host."),
        activation_id=string(),
    ),
    "slmgr xpr": obj(
        optional=("machine", "is_kms_host"),
        machine=string("The simulated machine; absent when the KMS host was meant."),
        is_kms_host=boolean("Present (true) when the command acted on the KMS host."),
        products=array(
            obj(
                activation_id=string(),
                license_status=integer(),
                text=string("slmgr's expiration line."),
                expires_at=nullable(time("Null when the licence does not run out.")),
            )
        ),
    ),
    "trust add": obj(name=string(), fingerprint=string()),
    "trust list": obj(
        anchors=array(obj(fingerprint=string(), name=string())), unreadable=array(string())
    ),
    "unpkey": obj(machine=string(), uninstalled=array(string())),
    "version": obj(script_version=string(), ospp_version=string()),
    "wizard": obj(
        optional=(
            "centre",
            "installation_id",
            "confirmation_id",
            "method",
            "status",
            "internet_error",
        ),
        machine=string(),
        lang=string(),
        product_id=string(),
        sku_id=string(),
        centre=string(),
        installation_id=string(),
        confirmation_id=string(),
        method=string(),
        activated=boolean(),
        status=string(),
        internet_error=ref("error"),
    ),
}

# Token-based activation is not simulated: these commands always refuse (data is null).
for _command in ("stokflag", "ctokflag", "dtokcerts", "dtokils", "rtokil", "tokact"):
    DATA[_command] = {"type": "null", "description": "Always null: the command always refuses."}
# 'from' is a Python keyword: the field is declared as from_
_migrate = DATA["center migrate"]["properties"]
DATA["center migrate"]["properties"] = {k.rstrip("_"): v for k, v in _migrate.items()}
DATA["center migrate"]["required"] = [k.rstrip("_") for k in DATA["center migrate"]["required"]]


def schemas() -> dict[str, Schema]:
    """The published schema of every command with --json, by command."""
    return {command: envelope(command, data, SHARED) for command, data in sorted(DATA.items())}


def schema_files() -> dict[str, str]:
    """``docs/schema/`` as file name -> text."""
    files = {
        file_name(command): json.dumps(schema, indent=2) + "\n"
        for command, schema in schemas().items()
    }
    files["envelope.json"] = json.dumps(any_command(), indent=2) + "\n"
    return files
