"""What slmgr.vbs's options (``ospp slmgr ...``) report under ``data`` with ``--json``; the
vocabulary and how it is published are in :mod:`ospp.cli.reports`."""

from __future__ import annotations

from ospp.cli.schema import (
    Schema,
    array,
    boolean,
    integer,
    nullable,
    obj,
    one_of,
    ref,
    string,
    time,
)

SLMGR: dict[str, Schema] = {
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
}
