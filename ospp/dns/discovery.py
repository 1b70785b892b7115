"""KMS host discovery through DNS SRV records (``_vlmcs._tcp.<domain>``), as clients do it.

Where to look: the ``/skms-domain`` domain alone when set; otherwise the resolver's domain and
search list (resolv.conf ``domain``/``search``; the registry on Windows). ``OSPP_DNS=ADDR[:PORT]``
sends the queries to one nameserver, ``OSPP_RESOLV_CONF=PATH`` reads another resolv.conf:
tests and admins who are debugging need both.

Order: RFC 2782, lowest priority first and weighted random within a priority, as dnspython's
``processing_order()`` implements it. A target of "." means "no KMS here" and counts as no
record. Each target's A and AAAA addresses are tried with the record's port.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ospp.core.endpoint import Endpoint, parse_address
from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_DNS_FAILURE,
    E_DNS_NAME,
    E_INVALID_ARG,
    NetworkError,
    UsageError,
)

if TYPE_CHECKING:
    from dns.resolver import Resolver

T = TypeVar("T")

SERVICE = "_vlmcs._tcp"
LIFETIME = 3.0
# A client tries at most this many of a domain's SRV records (in RFC 2782 order): an answer
# can carry a thousand, each costing two address lookups.
MAX_RECORDS = 16
# A client tries at most this many addresses in all: one target can have a hundred A and AAAA
# records (a round-robin pool, or a zone that means harm), each a connection and its timeout.
MAX_HOSTS = 16
# Seconds spent resolving SRV targets before trying the hosts found so far.
ADDRESS_BUDGET = 10.0
# Seconds spent on SRV queries across the search list: a domain not asked by then is left
# out. A nameserver that does not answer would otherwise cost LIFETIME per domain searched.
SEARCH_BUDGET = 10.0


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass
class DomainResult:
    domain: str
    records: list[SrvRecord] = field(default_factory=list)  # in the order chosen
    outcome: str = "found"  # found | nxdomain | no-answer | unavailable | servfail | timeout
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "name": f"{SERVICE}.{self.domain}",
            "outcome": self.outcome,
            "detail": self.detail,
            "records": [r.__dict__ for r in self.records],
        }


@dataclass
class Search:
    """What discovery looked at: the domains in order, each with what DNS said."""

    nameservers: list[str]
    source: str  # "skms-domain" or "search list"
    domains: list[DomainResult]

    def ordered(self) -> list[tuple[str, SrvRecord]]:
        return [(d.domain, r) for d in self.domains for r in d.records]


def resolver(environ: Mapping[str, str]) -> Resolver:
    import dns.exception
    import dns.resolver

    conf = environ.get("OSPP_RESOLV_CONF")
    if conf:
        _check_resolv_conf(conf)
    try:
        res = dns.resolver.Resolver(filename=conf) if conf else dns.resolver.Resolver()
    except (OSError, ValueError, dns.exception.DNSException) as exc:
        opening = exc if isinstance(exc, OSError) else exc.__context__
        if conf and isinstance(opening, OSError):  # dnspython words it "cannot open"
            raise _unreadable(conf, opening) from exc
        if conf and isinstance(exc, UnicodeDecodeError):
            raise UsageError(
                f"OSPP_RESOLV_CONF names {conf!r}, which cannot be read as text: {exc.reason}",
                _RESOLV_HINT,
            ) from exc
        if (
            conf
            and isinstance(exc, dns.exception.DNSException)
            and not isinstance(exc, dns.resolver.NoResolverConfiguration)
        ):
            # a domain or search entry that is no DNS name: the whole file would be unused,
            # its nameservers too, and discovery would say that none is configured
            raise UsageError(
                f"OSPP_RESOLV_CONF names {conf!r}, which cannot be used: a domain or search "
                f"entry in it is not a DNS name ({exc})",
                "Correct or remove that entry (labels of 1-63 characters, no empty label).",
            ) from exc
        # The system's resolv.conf missing or not text, or a domain that is no DNS name (an
        # empty label, one over 63 bytes): no nameservers.
        res = dns.resolver.Resolver(configure=False)
        if isinstance(exc, dns.resolver.NoResolverConfiguration) and (conf or os.name != "nt"):
            # No nameserver in it: its domain and search list still hold (OSPP_DNS may give
            # the nameserver), and dnspython keeps them when it refuses the file.
            with contextlib.suppress(OSError, ValueError, dns.exception.DNSException):
                res.read_resolv_conf(conf or "/etc/resolv.conf")
    server = environ.get("OSPP_DNS")
    if server:
        endpoint = parse_address(server, 53, "OSPP_DNS")
        res.nameservers = [endpoint.host]
        res.port = endpoint.port
    res.lifetime = LIFETIME
    res.timeout = LIFETIME / 2
    return res


def _unreadable(conf: str, exc: OSError) -> UsageError:
    return UsageError(
        f"OSPP_RESOLV_CONF names {conf!r}, which cannot be read: {exc.strerror or exc}",
        _RESOLV_HINT,
        E_ACCESS_DENIED if isinstance(exc, PermissionError) else E_INVALID_ARG,
    )


_RESOLV_HINT = "Point OSPP_RESOLV_CONF at a resolv.conf file, or unset it to use the system's."


def _check_resolv_conf(conf: str) -> None:
    """A resolv.conf the user named must be a file that is there: a typo must not look like
    a network without DNS. Anything but a regular file (a directory, a FIFO or a device such
    as /dev/zero, which would be waited on or read for ever) is refused before it is opened;
    the null device reads as an empty file."""
    if os.path.normcase(conf) == os.path.normcase(os.devnull):  # "nul" is "NUL" on Windows
        return
    try:
        mode = os.stat(conf).st_mode
    except OSError as exc:
        raise _unreadable(conf, exc) from exc
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise UsageError(f"OSPP_RESOLV_CONF names {conf!r}, which is {kind}", _RESOLV_HINT)


def searchable(domain: str) -> bool:
    """Whether ``_vlmcs._tcp.<domain>`` is a name DNS can hold (255 bytes at most, no label
    over 63): a longer domain can hold no KMS record, whatever its nameserver says."""
    import dns.exception
    import dns.name

    try:
        dns.name.from_text(f"{SERVICE}.{domain}.")
    except dns.exception.DNSException:
        return False
    return True


def _too_long(domain: str) -> str:
    return (
        f"{SERVICE}.{domain} is longer than the 255 bytes a DNS name may have: no record can "
        "be published there"
    )


def _nameservers(res: Resolver) -> list[str]:
    return [f"{ns}:{res.port}" if res.port != 53 else str(ns) for ns in res.nameservers]


def domains(lookup_domain: str | None, res: Resolver) -> tuple[list[str], str]:
    if lookup_domain:
        return [lookup_domain.rstrip(".")], "skms-domain"
    names = [d.to_text(omit_final_dot=True) for d in (res.search or [])]
    if res.domain is not None and len(res.domain.labels) > 1:
        own = res.domain.to_text(omit_final_dot=True)
        if own not in names:
            names.insert(0, own)
    return [n for n in names if n and n != "."], "search list"


def lookup(res: Resolver, domain: str, answers: Answers | None = None) -> DomainResult:
    """One SRV query (or its answer kept in ``answers``), its records in RFC 2782 processing
    order: chosen afresh at every call, so that machines sharing an answer spread by weight."""
    result = DomainResult(domain)
    if not searchable(domain):  # asked of no nameserver: none is to blame
        result.outcome, result.detail = "nxdomain", _too_long(domain)
        return result
    if not res.nameservers:  # the resolver's configuration names none: nothing is asked
        result.outcome, result.detail = "servfail", NO_NAMESERVER
        return result
    if answers is None:
        outcome, detail, rrset = _query_srv(res, domain)
    else:
        outcome, detail, rrset = answers.get(("SRV", domain), lambda: _query_srv(res, domain))
    if rrset is None:
        result.outcome, result.detail = outcome, detail
        return result
    from dns.rdtypes.IN.SRV import SRV

    records = [
        SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
        for r in rrset.processing_order()
        if isinstance(r, SRV)
    ]
    records = [r for r in records if r.target not in ("", ".")][:MAX_RECORDS]
    if not records:
        result.outcome = "unavailable"
        result.detail = 'the SRV target is ".": the service is declared not available here'
    result.records = records
    return result


def _query_srv(res: Resolver, domain: str) -> tuple[str, str, Any]:
    """(outcome, detail, the SRV rrset or None) of the query for ``domain``'s record."""
    import dns.exception
    import dns.resolver

    try:
        answer = res.resolve(f"{SERVICE}.{domain}.", "SRV", search=False)
    except dns.resolver.NXDOMAIN:
        return "nxdomain", "the name does not exist (NXDOMAIN)", None
    except dns.resolver.NoAnswer:
        return "no-answer", "the name exists but has no SRV record", None
    except dns.resolver.NoNameservers as exc:
        return "servfail", f"the nameserver failed to answer (SERVFAIL or refused): {exc}", None
    except dns.exception.Timeout:
        return "timeout", f"no answer within {LIFETIME:.0f} s", None
    except dns.exception.DNSException as exc:
        return "servfail", f"{type(exc).__name__}: {exc}", None
    assert answer.rrset is not None
    return "found", "", answer.rrset


class Answers:
    """DNS answers shared by the machines of one pass (``fleet act``, ``service --all``), as a
    caching resolver shares them: each name is asked once every KEEP seconds, by one thread
    while the others wait for its answer, and a failure (a timeout, SERVFAIL) is kept as an
    answer is. So a nameserver that does not answer costs a pass one timeout every KEEP
    seconds, not one per machine."""

    KEEP = 30.0

    def __init__(self) -> None:
        import threading

        self._guard = threading.Lock()
        self._turns: dict[tuple[str, str], threading.Lock] = {}
        self._kept: dict[tuple[str, str], tuple[float, Any]] = {}

    def get(self, key: tuple[str, str], ask: Callable[[], T]) -> T:
        import threading
        import time

        with self._guard:
            turn = self._turns.setdefault(key, threading.Lock())
        with turn:
            with self._guard:
                kept = self._kept.get(key)
            if kept is not None and time.monotonic() < kept[0]:
                return cast(T, kept[1])
            value = ask()
            with self._guard:
                self._kept[key] = (time.monotonic() + self.KEEP, value)
            return value


def search(
    lookup_domain: str | None, environ: Mapping[str, str], answers: Answers | None = None
) -> Search:
    """Query every domain to search (``lookup_domain`` alone when set, as /skms-domain)."""
    import time

    res = resolver(environ)
    names, source = domains(lookup_domain, res)
    deadline = time.monotonic() + SEARCH_BUDGET
    results: list[DomainResult] = []
    for domain in names:
        if results and time.monotonic() >= deadline:
            left = DomainResult(domain)
            left.outcome = "timeout"
            left.detail = f"not asked: the search had taken {SEARCH_BUDGET:.0f} s already"
            results.append(left)
            continue
        results.append(lookup(res, domain, answers))
    return Search(_nameservers(res), source, results)


def addresses(
    res: Resolver, target: str, port: int, answers: Answers | None = None
) -> list[Endpoint]:
    """The A and AAAA addresses of an SRV target (CNAMEs are followed)."""
    if answers is None:
        found = _query_addresses(res, target)
    else:
        found = answers.get(("A/AAAA", target), lambda: _query_addresses(res, target))
    return [Endpoint(address, port) for address in found]


def _query_addresses(res: Resolver, target: str) -> list[str]:
    import dns.exception

    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = res.resolve(target + ".", rdtype, search=False)
        except dns.exception.DNSException:
            continue
        found += [r.address for r in answer]
    return found


NO_NAMESERVER = "no nameserver is configured, so none was asked"
NO_NAMESERVER_FIX = (
    "Add a nameserver to the resolver's configuration (resolv.conf; OSPP_RESOLV_CONF names "
    "another), point OSPP_DNS=ADDR[:PORT] at one, or set a host with /sethst."
)


def failure(found: Search) -> NetworkError:
    """The error for a search that yielded no host to try."""
    tried = ", ".join(f"{SERVICE}.{d.domain}: {d.detail}" for d in found.domains) or "none"
    if found.domains and not found.nameservers:
        return NetworkError(
            E_DNS_FAILURE,
            "no DNS server is configured: the resolver's configuration names none (or "
            f"cannot be used), so no {SERVICE} SRV record could be looked up ({found.source}: "
            f"{', '.join(d.domain for d in found.domains)})",
            NO_NAMESERVER_FIX,
        )
    servers = ", ".join(found.nameservers) or "no nameserver configured"
    broken = [d for d in found.domains if d.outcome in ("servfail", "timeout")]
    if broken and len(broken) == len(found.domains):
        return NetworkError(
            E_DNS_FAILURE,
            f"the DNS server {servers} failed for every domain searched ({tried})",
            "Check the nameserver (OSPP_DNS=ADDR[:PORT] points at another), or set a host "
            "with /sethst.",
        )
    if not found.domains:
        return NetworkError(
            E_DNS_NAME,
            "no domain to search for KMS SRV records: no /skms-domain, and the resolver has no "
            "domain or search list",
            "Set /skms-domain:FQDN or a host with /sethst:HOST.",
        )
    return NetworkError(
        E_DNS_NAME,
        f"no {SERVICE} SRV record in any domain searched ({found.source}; nameserver "
        f"{servers}): {tried}",
        "Publish the record (ospp kms dns records prints it), set /skms-domain:FQDN, or set a "
        "host with /sethst:HOST. 'ospp dnsdiag' shows each step.",
    )


def find_hosts(
    lookup_domain: str | None, environ: Mapping[str, str], answers: Answers | None = None
) -> tuple[list[Endpoint], dict[str, str]]:
    """Every address to try, in order (the first MAX_HOSTS), and for each (as
    ``str(endpoint)``) the SRV target that named it (``target:port``, what /dstatus shows as
    the KMS machine name from DNS).

    Raises 0x8007232B / 0x8007232A when there is none. ``answers``: those of the pass this
    search is part of (:class:`Answers`).
    """
    import time

    found = search(lookup_domain, environ, answers)
    res = resolver(environ)
    hosts: list[Endpoint] = []
    names: dict[str, str] = {}
    deadline = time.monotonic() + ADDRESS_BUDGET
    for _, record in found.ordered():
        if hosts and time.monotonic() > deadline:
            break  # enough time spent on names that do not resolve: try what was found
        if len(hosts) >= MAX_HOSTS:
            break
        resolved = addresses(res, record.target, record.port, answers)
        resolved = resolved or [Endpoint(record.target, record.port)]  # let connect say why
        for endpoint in resolved:
            if str(endpoint) in names or len(hosts) >= MAX_HOSTS:
                continue  # an address named again (another target, another domain): tried once
            names[str(endpoint)] = f"{record.target}:{record.port}"
            hosts.append(endpoint)
    if not hosts:
        raise failure(found)
    return hosts, names
