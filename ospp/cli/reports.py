"""What each command reports under ``data`` with ``--json``: one definition per command.

Field names follow one vocabulary (docs/JSON.md): times are ``*_at`` in ISO 8601 UTC ending
in Z, durations carry their unit, ``product_id`` is a catalog product id (ProPlus2021),
``sku_id`` a licence's SKU, ``products`` a list of objects, and a failure inside a report is
the one error object (``ref("error")``) of the envelope. :mod:`ospp.cli.schema` turns these
into docs/schema/; the tests check every output against them with no field left undeclared.

The ospp.vbs verbs and the other commands are defined here; the KMS host's commands in
:mod:`ospp.cli.reports_kms`, slmgr.vbs's options in :mod:`ospp.cli.reports_slmgr`, and the
shapes several commands share (``ref(name)``) in :mod:`ospp.cli.reports_shared`.
"""

from __future__ import annotations

import json

from ospp.cli.reports_kms import KMS
from ospp.cli.reports_shared import SHARED
from ospp.cli.reports_slmgr import SLMGR
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
    obj,
    ref,
    string,
    time,
)

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
            obj(
                target=string(),
                # null: the target has no A/AAAA record, so no address was contacted
                address=nullable(string()),
                result=string(),
                fix=nullable(string()),
            )
        ),
        answered=nullable(string()),
    ),
    "dstatus": obj(
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
            obj(
                machine=string(),
                product_id=string(),
                action=string(),
                tried=boolean(
                    "False when the request was kept back: the machine's KMS host had stopped "
                    "answering earlier in the pass, or the pass was stopped (its store was "
                    "left as it was)."
                ),
                error=ref("error"),
            )
        ),
    ),
    "fleet create": obj(
        first=string(), last=string(), product_id=string(), summary=mapping(integer())
    ),
    "fleet export": obj(machines=integer(), file=string()),
    "fleet import": obj(summary=mapping(integer())),
    "fleet inpkey": obj(
        summary=mapping(integer()), failures=array(obj(machine=string(), error=ref("error")))
    ),
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
                optional=("ok", "kms_host", "count", "tried", "error"),
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
                tried=boolean(
                    "With error: false when the request was kept back (the KMS host had "
                    "stopped answering earlier in the pass, or the pass was stopped; the store "
                    "was left as it was)."
                ),
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
        method=nullable(string()),  # null: 'Not now' (the key installed, not activated)
        activated=boolean(),
        status=string(),
        internet_error=ref("error"),
    ),
}

DATA |= KMS | SLMGR

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
