"""A simulated machine's settings, kept in the ``meta`` table of its licence store: their names
and defaults (ospp.vbs / REFERENCE 4), what a stored value may be, and the KMS client settings
(/sethst, /cachst, /skms-domain, intervals) read from them.
"""

from __future__ import annotations

from collections.abc import Mapping

from ospp.core.errors import UsageError
from ospp.core.record import Record

# Settings kept in ``meta`` with their defaults (ospp.vbs / REFERENCE 4).
DEFAULTS: dict[str, str] = {
    "kms_host": "",
    "kms_port": "1688",
    "kms_cache": "1",
    "kms_domain": "",
    "kms_cached_host": "",
    "kms_dns_host": "",
    "kms_policy": "any",  # which KMS host certificates to accept: any, online-only
    "actype": "0",
    "activation_interval": "120",
    "renewal_interval": "10080",
    "rearms_used": "0",
    "user_operations": "0",  # 1: standard users may change licensing (/puserops), 0: denied
    "osppsvc_start_mode": "manual",  # the simulated licensing service: manual or auto
    "osppsvc_started_at": "",  # when /osppsvcrestart last (re)started it; "" = never
    "generation": "0",
}


# Settings stored as whole numbers, and how many digits they may have.
_NUMBERS = {
    "kms_port": 5,
    "actype": 1,
    "activation_interval": 9,
    "renewal_interval": 9,
    "rearms_used": 9,
    "generation": 18,
}
# Numbers of which only some values make sense: those /setprt and /actype accept. Any other is
# a damaged setting, not a port to try or an activation type to name.
_RANGES = {"kms_port": range(1, 65536), "actype": range(4)}


def cacheable_host(value: str) -> bool:
    """Whether ``value`` (``host:port``, ``[IPv6]:port``) may be kept as the cached KMS host:
    what reading the store accepts for it."""
    from ospp.core.hostname import split_host

    try:
        split_host(value, 1688)
    except UsageError:
        return False
    return True


# Settings that name a host or domain, stored as /sethst, /skms-domain and discovery write
# them: checked by the same rules, so that a host edited into the store is reported as a
# damaged setting rather than tried (/sethst keeps the port apart). The rules are imported
# only for a store that holds one: /dstatus of a machine with none does without them.
_HOSTS = frozenset({"kms_host", "kms_cached_host", "kms_domain"})


def _valid_host_setting(name: str, value: str) -> bool:
    from ospp.core.hostname import valid_domain, valid_target

    if name == "kms_host":
        return valid_target(value)
    if name == "kms_domain":
        return valid_domain(value)
    return cacheable_host(value)  # host:port, [IPv6]:port


def valid_setting(name: str, value: object) -> bool:
    """Whether a stored setting is one ospp can have written: text; a whole number of at most
    so many digits for a number, within its range for a port or an activation type; a valid
    host (or none) for a host."""
    if not isinstance(value, str):
        return False
    digits = _NUMBERS.get(name)
    if digits is not None:
        if not (value.isascii() and value.isdigit() and len(value) <= digits):
            return False
        return name not in _RANGES or int(value) in _RANGES[name]
    return name not in _HOSTS or not value or _valid_host_setting(name, value)


class KmsSettings(Record):
    host: str | None
    port: int
    caching: bool
    lookup_domain: str | None
    actype: int
    activation_interval: int
    renewal_interval: int
    discovered: str | None  # host:port DNS named first at the last discovery
    cached: str | None  # host:port that last answered, reused while host caching is on
    online_only: bool = False  # accept only hosts certified online (/kms-policy:online-only)


def kms_settings(values: Mapping[str, str]) -> KmsSettings:
    return KmsSettings(
        host=values["kms_host"] or None,
        port=int(values["kms_port"]),
        caching=values["kms_cache"] == "1",
        lookup_domain=values["kms_domain"] or None,
        actype=int(values["actype"]),
        activation_interval=int(values["activation_interval"]),
        renewal_interval=int(values["renewal_interval"]),
        discovered=values["kms_dns_host"] or None,
        cached=values["kms_cached_host"] or None,
        online_only=values.get("kms_policy") == "online-only",
    )
