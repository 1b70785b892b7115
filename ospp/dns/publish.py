"""DNS publishing by a KMS host: its ``_vlmcs._tcp`` SRV record (and, when asked, its A/AAAA
records) by RFC 2136 dynamic update signed with TSIG, to a configured nameserver.

A host publishes into its own zone and any extra domains (``domain[,priority,weight]``), at
start and every ``interval_hours`` (24 by default), replacing only its own SRV record so other
hosts' records stay. For admins who publish by hand, :func:`zone_lines` gives the records.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ospp.core.endpoint import parse_address, valid_host
from ospp.core.errors import (
    E_DNS_BAD_KEY,
    E_DNS_FAILURE,
    E_DNS_NOT_AUTH,
    E_DNS_REFUSED,
    NetworkError,
    UsageError,
)
from ospp.core.files import read_user_file

if TYPE_CHECKING:
    import dns.name

SERVICE = "_vlmcs._tcp"
SRV_NUMBER_MAX = 65535  # an SRV record's priority and weight are 16-bit numbers
TIMEOUT = 5.0


@dataclass
class Publishing:
    """What a KMS host publishes and where. Stored as JSON in the host's store."""

    enabled: bool = False
    server: str = ""  # nameserver ADDR[:PORT] that accepts the updates
    domain: str = ""  # where the SRV record goes; the zone holding it is found by SOA
    hostname: str = ""  # the SRV target
    addresses: list[str] = field(default_factory=list)  # A/AAAA to publish for hostname
    ttl: int = 3600
    priority: int = 0
    weight: int = 100
    interval_hours: float = 24.0
    extra: list[str] = field(default_factory=list)  # domain[,priority,weight]
    tsig_name: str = ""
    tsig_algorithm: str = "hmac-sha256"
    tsig_secret: str = ""

    def to_json(self, over: str | None = None) -> str:
        """The settings as stored. ``over``: the stored text they replace, whose fields this
        version does not know (a newer ospp's) are kept as they were."""
        data = asdict(self)
        if over:
            kept = json.loads(over, parse_constant=_no_constant, parse_float=_finite)
            if isinstance(kept, dict):
                data = {**{k: v for k, v in kept.items() if k not in data}, **data}
        return json.dumps(data, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | None) -> Publishing:
        """The settings as :meth:`to_json` stored them (the defaults for none): the one
        reader of the stored form. ValueError, saying what is wrong, for anything else: not a
        JSON object, a known field of the wrong type, a number beyond a float's range. Fields this
        version does not know (a newer ospp's) are ignored here, and kept by :meth:`to_json`."""
        if not text:
            return cls()
        try:
            data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
        except (ValueError, RecursionError):
            raise ValueError("it is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        defaults = asdict(cls())
        values: dict[str, Any] = {}
        for name, default in defaults.items():
            if name not in data:
                continue
            value = data[name]
            if not _same_type(value, default):
                raise ValueError(f"{name} is {json.dumps(value)[:40]}, not {_KINDS[type(default)]}")
            values[name] = float(value) if isinstance(default, float) else value
        return cls(**values)

    def shown(self) -> dict[str, Any]:
        """The settings for ``--json``: the secret hidden, the TTL's unit in its name."""
        data = {("ttl_seconds" if k == "ttl" else k): v for k, v in asdict(self).items()}
        data["tsig_secret"] = "(set)" if self.tsig_secret else ""
        return data

    def targets(self) -> list[tuple[str, int, int]]:
        """(domain, priority, weight) for the own zone and each extra domain."""
        out = [(self.domain, self.priority, self.weight)] if self.domain else []
        for item in self.extra:
            domain, *rest = item.split(",")
            prio = int(rest[0]) if len(rest) > 0 and rest[0] else self.priority
            weight = int(rest[1]) if len(rest) > 1 and rest[1] else self.weight
            out.append((domain.strip().rstrip("."), prio, weight))
        return out

    def require_enabled(self) -> None:
        """Refuse to publish settings that publishing was turned off in ('kms dns disable',
        'kms dns set --no-publish', slmgr /cdns), as the running host does not publish them."""
        if not self.enabled:
            raise UsageError(
                "DNS publishing is disabled on this KMS host ('ospp kms dns disable', "
                "'ospp kms dns set --no-publish' or slmgr /cdns): nothing was published",
                "Enable it again with: ospp kms dns enable (or slmgr /sdns); to publish the "
                "records by hand instead, print them with: ospp kms dns records",
            )

    def check(self, updates: bool = True) -> None:
        """Refuse settings that cannot be published: ``updates`` (publishing by dynamic
        update) needs a server too; records published by hand do not."""
        if not self.domain:
            raise UsageError(
                "no domain to publish in",
                "Set it: ospp kms dns set --domain corp.example.com.",
            )
        if not valid_host(self.domain):
            raise UsageError(f"--domain {self.domain!r} is not a DNS domain name")
        if not self.hostname:
            raise UsageError(
                "no host name for the SRV record to name",
                "Set this host's DNS name: ospp kms dns set --hostname kms1.corp.example.com.",
            )
        if not valid_host(self.hostname):
            raise UsageError(f"--hostname {self.hostname!r} is not a host name")
        if updates and not self.server:
            raise UsageError(
                "--server ADDR[:PORT] names the DNS server that takes the updates",
                "To publish the records by hand instead, add --no-publish and print them "
                "with: ospp kms dns records",
            )
        if self.server:
            parse_address(self.server, 53, "--server")
        for address in self.addresses:
            try:
                ipaddress.ip_address(address)
                plain = "%" not in address
            except ValueError:
                plain = False
            if not plain:
                raise UsageError(f"--address {address!r} is not an IPv4 or IPv6 address")
        for name, value in (("--priority", self.priority), ("--weight", self.weight)):
            if not 0 <= value <= SRV_NUMBER_MAX:
                raise UsageError(f"{name} must be 0-{SRV_NUMBER_MAX}, not {value}")
        seen = {self.domain.lower()}
        for item in self.extra:
            domain, *rest = item.split(",")
            name = domain.strip().rstrip(".").lower()
            if name in seen:  # the host has one record per domain: the last would win
                raise UsageError(
                    f"--extra {item!r}: the domain {domain.strip()!r} is the host's own or "
                    "is listed twice; the host publishes one record per domain"
                )
            seen.add(name)
            numbers = [r.strip() for r in rest if r.strip()]
            if (
                not valid_host(domain.strip())
                or len(rest) > 2
                # ASCII digits only: "²" is a digit to isdigit(), not to int()
                or not all(n.isascii() and n.isdigit() and len(n) < 6 for n in numbers)
                or not all(int(n) <= SRV_NUMBER_MAX for n in numbers)
            ):
                raise UsageError(
                    f"--extra {item!r} is not domain[,priority,weight] (each 0-{SRV_NUMBER_MAX})"
                )
        for domain, _prio, _weight in self.targets():
            if not _dns_name(f"{SERVICE}.{domain}"):
                raise UsageError(
                    f"the domain {domain!r} is too long: {SERVICE}.{domain} would be over the "
                    "255 bytes a DNS name may have",
                    "Use a domain of at most 241 characters.",
                )
        if not 1 <= self.ttl <= 604800:
            raise UsageError(f"--ttl must be 1-604800 seconds, not {self.ttl}")
        if not MIN_INTERVAL_HOURS <= self.interval_hours <= 24 * 30:
            raise UsageError(
                "--interval-hours must be at least 0.1 (6 minutes) and at most 720, "
                f"not {self.interval_hours}"
            )
        if bool(self.tsig_name) != bool(self.tsig_secret):
            raise UsageError("a TSIG key needs both a name and a secret")
        if self.tsig_secret:
            try:
                base64.b64decode(self.tsig_secret, validate=True)
            except binascii.Error:
                raise UsageError("the TSIG secret is not base64") from None
            if self.tsig_algorithm.lower() not in TSIG_ALGORITHMS:
                raise UsageError(
                    f"the TSIG algorithm {self.tsig_algorithm!r} is not one of "
                    f"{', '.join(sorted(TSIG_ALGORITHMS))}"
                )
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", self.tsig_name) or not _dns_name(
                self.tsig_name
            ):
                raise UsageError(f"the TSIG key name {self.tsig_name!r} is not a DNS name")


_KINDS = {bool: "true or false", str: "text", int: "a whole number", float: "a number",
          list: "a list of text"}  # fmt: skip


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON has")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: stored again, it would be Infinity
        raise ValueError(f"{text[:40]} is beyond the numbers a setting may hold")
    return value


def _same_type(value: object, default: object) -> bool:
    """Whether a stored field's ``value`` has the type of its ``default``."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        try:
            return isinstance(value, int | float) and math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            return False
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return type(value) is type(default)


def _dns_name(text: str) -> bool:
    """Whether dnspython takes ``text`` as a name (no empty label, none over 63 bytes)."""
    import dns.exception
    import dns.name

    try:
        dns.name.from_text(text)
    except dns.exception.DNSException:
        return False
    return True


# A host re-publishes its record at most this often: a DNS server is not to be flooded.
MIN_INTERVAL_HOURS = 0.1

# What tsig-keygen writes and DNS servers take (RFC 8945; hmac-md5 for old servers).
TSIG_ALGORITHMS = frozenset(
    {"hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}
)

_KEY_FILE = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{[^}]*algorithm\s+(?P<alg>[\w-]+)\s*;[^}]*'
    r'secret\s+"(?P<secret>[^"]+)"\s*;',
    re.S,
)


def read_key_file(path: Path) -> tuple[str, str, str]:
    """(name, algorithm, secret) from a BIND key file as tsig-keygen writes it."""
    match = _KEY_FILE.search(read_user_file(path, "TSIG key file"))
    if match is None:
        raise UsageError(f"{path} holds no 'key NAME {{ algorithm ...; secret \"...\"; }};'")
    return match["name"], match["alg"], match["secret"]


def zone_lines(pub: Publishing, port: int) -> list[str]:
    """The records, in zone-file form, for admins who publish by hand."""
    lines = []
    for domain, prio, weight in pub.targets():
        lines.append(
            f"{SERVICE}.{domain}. {pub.ttl} IN SRV {prio} {weight} {port} "
            f"{pub.hostname.rstrip('.')}."
        )
    for address in pub.addresses:
        kind = "AAAA" if ":" in address else "A"
        lines.append(f"{pub.hostname.rstrip('.')}. {pub.ttl} IN {kind} {address}")
    return lines


_RETRIES = "a running host keeps serving and tries again later."


def _fail(code: int, server: str, domain: str, why: str) -> NetworkError:
    """The server answered, and did not take the update: its policy or the key said no."""
    return NetworkError(
        code,
        f"the DNS server {server} did not take the update for {domain}: {why}",
        "Check the zone's update-policy and the TSIG key (name, algorithm, secret); " + _RETRIES,
    )


def _unreachable(server: str, domain: str, why: str) -> NetworkError:
    """No usable answer came: the server's address or port is wrong, or it is not running."""
    return NetworkError(
        E_DNS_FAILURE,
        f"the DNS server {server} could not be reached to update {domain}: {why}",
        "Check the DNS server's address and port (ospp kms dns set --server ADDR[:PORT]) and "
        "that it is running and answers DNS over TCP; " + _RETRIES,
    )


def _transport_failure(exc: BaseException) -> str:
    """What went wrong on the way to the server, in words."""
    import dns.exception

    if isinstance(exc, dns.exception.Timeout):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, EOFError | ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "it closed the connection without answering"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused (nothing listens on that port)"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return f"its answer is not a DNS message ({type(exc).__name__}: {exc})"


def _zone_of(name: dns.name.Name, host: str, port: int) -> dns.name.Name:
    """The zone that holds ``name`` on this server: the nearest enclosing name with an SOA."""
    import dns.message
    import dns.name
    import dns.query
    import dns.rdatatype

    candidate = name
    while True:
        query = dns.message.make_query(candidate, dns.rdatatype.SOA)
        response = dns.query.tcp(query, host, port=port, timeout=TIMEOUT)
        if any(r.rdtype == dns.rdatatype.SOA and r.name == candidate for r in response.answer):
            return candidate
        if candidate == dns.name.root:
            return name
        candidate = candidate.parent()


@dataclass(frozen=True)
class Published:
    """What a publish did, in words: a line per record set published, and a line per one that
    could not be (``left_out``: the addresses of a host name outside every zone updated)."""

    done: list[str]
    left_out: list[str]

    @property
    def lines(self) -> list[str]:
        return self.done + self.left_out


def publish(pub: Publishing, port: int) -> Published:
    """Send the updates now; says what was published and what was left out. Raises
    NetworkError."""
    import dns.exception
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.tsig
    import dns.tsigkeyring
    import dns.update

    endpoint = parse_address(pub.server, 53, "DNS server")
    keyring = None
    if pub.tsig_name:
        # tsig-keygen and BIND say hmac-md5; on the wire, and to dnspython, it is
        # HMAC-MD5.SIG-ALG.REG.INT (RFC 8945): the others are named as written
        algorithm = pub.tsig_algorithm
        if algorithm.lower() == "hmac-md5":
            algorithm = dns.tsig.HMAC_MD5.to_text()
        keyring = dns.tsigkeyring.from_text({pub.tsig_name: (algorithm, pub.tsig_secret)})
    target = dns.name.from_text(pub.hostname)
    done = []
    zones: list[str] = []  # the zones updated
    addressed = False  # the A/AAAA records were published (in a zone holding the target)
    for domain, prio, weight in pub.targets():
        owner = dns.name.from_text(f"{SERVICE}.{domain}")
        try:
            zone = _zone_of(dns.name.from_text(domain), endpoint.host, endpoint.port)
            update = dns.update.UpdateMessage(zone, keyring=keyring)
            query = dns.message.make_query(owner, dns.rdatatype.SRV)
            existing = dns.query.tcp(query, endpoint.host, port=endpoint.port, timeout=TIMEOUT)
            for rrset in existing.answer:
                for rdata in rrset:
                    if getattr(rdata, "target", None) == target:
                        update.delete(owner, rdata)  # our earlier record, whatever it said
            update.add(owner, pub.ttl, "SRV", f"{prio} {weight} {port} {target}")
            with_addresses = target.is_subdomain(zone) and bool(pub.addresses)
            if with_addresses:
                for kind in ("A", "AAAA"):
                    values = [a for a in pub.addresses if (":" in a) == (kind == "AAAA")]
                    if values:
                        update.replace(target, pub.ttl, kind, *values)
            response = dns.query.tcp(update, endpoint.host, port=endpoint.port, timeout=TIMEOUT)
        except dns.tsig.PeerError as exc:
            raise _fail(E_DNS_BAD_KEY, str(endpoint), domain, f"TSIG error ({exc})") from exc
        except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadTime) as exc:
            why = f"its answer's TSIG signature does not verify ({type(exc).__name__})"
            raise _fail(E_DNS_FAILURE, str(endpoint), domain, why) from exc
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            # dnspython reports a connection closed before the answer as EOFError
            raise _unreachable(str(endpoint), domain, _transport_failure(exc)) from exc
        rcode = response.rcode()
        if rcode == dns.rcode.REFUSED:
            raise _fail(E_DNS_REFUSED, str(endpoint), domain, "REFUSED")
        if rcode == dns.rcode.NOTAUTH:
            raise _fail(
                E_DNS_NOT_AUTH,
                str(endpoint),
                domain,
                "NOTAUTH (not authoritative, or bad TSIG signature)",
            )
        if rcode != dns.rcode.NOERROR:
            raise _fail(E_DNS_FAILURE, str(endpoint), domain, dns.rcode.to_text(rcode))
        done.append(f"published {SERVICE}.{domain}. SRV {prio} {weight} {port} {target}")
        zones.append(zone.to_text())
        if with_addresses and not addressed:
            addressed = True
            done.append(f"published {target} A/AAAA {', '.join(pub.addresses)}")
    left_out = []
    if pub.addresses and not addressed:
        # only a zone's own names can be updated in it: said, or clients find a target
        # without an address and the admin who set --address would not know why
        left_out.append(
            f"not published: the addresses of {target} ({', '.join(pub.addresses)}), which is "
            f"outside the zones updated ({', '.join(zones)}); add them in the zone that holds "
            f"{target}, or set --hostname to a name inside one of these zones"
        )
    return Published(done, left_out)
