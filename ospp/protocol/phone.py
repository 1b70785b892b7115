"""Installation IDs (IID) and confirmation IDs (CID): the digits read over the phone.

IID: 9 groups of 7 digits. Each group is 6 data digits and a Damm check digit, which catches
every single mistyped digit and every swap of two adjacent digits in the group. The 54 data
digits hold a 177-bit number:

    version (3) | product (8) | channel (2) | key serial (32) | key proof (60)
    | hardware hash (40) | machine tag (32, from the CMID)

The key proof (:func:`key_proof`) shows the centre that the caller holds the key without
disclosing it: 60 bits of an HMAC keyed with the key's security value over the IID's other
fields. The centre, which can compute every key's security value from its serial, checks it;
whoever hears the IID read out (the phone operator, the centre's call log) cannot rebuild the
key from it. IIDs of older ospp (versions 1 and 2) held the security value itself.

A KMS host's IID is version 4 (2 from older ospp): its last 72 bits are a tag of the host's
response-signing key (:func:`host_key_tag`) instead of a hardware hash and machine tag. For it
the centre signs :func:`host_certificate_message`, which leaves out the key proof, so the host
can hand its certificate to every client without disclosing anything of its key.

CID: 20 groups of 6 digits, again 5 data digits plus a Damm check digit. The 100 data digits
hold the phone centre's DSA signature (r, s), 160 bits each, as r * 2**160 + s, over the IID.
A client checks a CID with the centre's public key alone; it cannot make one.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ospp.core.catalog import Channel
from ospp.core.errors import (
    E_BAD_FORMAT,
    E_CHECK_DIGIT,
    E_CID_LENGTH,
    E_MISMATCH,
    N_,
    LicensingError,
)

IID_GROUPS, IID_GROUP_DATA = 9, 6
CID_GROUPS, CID_GROUP_DATA = 20, 5
IID_VERSION = 3  # MAK keys
HOST_IID_VERSION = 4  # KMS host keys: hardware and machine tag hold the 72-bit host key tag
# Versions older ospp reads out, still confirmed by the centre: they hold the key's security
# value where the current ones hold its proof (so they disclose the key to whoever hears them).
KEY_IID_VERSION = 1
KEY_HOST_IID_VERSION = 2
HOST_VERSIONS = frozenset({HOST_IID_VERSION, KEY_HOST_IID_VERSION})
HOST_TAG_BITS = 72

# The IID's channel field: which kind of key the installation ID carries.
IID_CHANNEL_MAK = 1
IID_CHANNEL_KMS_HOST = 2
IID_CHANNELS = {Channel.MAK: IID_CHANNEL_MAK, Channel.KMS_HOST: IID_CHANNEL_KMS_HOST}


def iid_channel(code: int) -> Channel | None:
    """The channel an IID's channel field names, or None for a code no key has."""
    return next((channel for channel, c in IID_CHANNELS.items() if c == code), None)


_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def machine_tag(source: str) -> int:
    """32 bits naming a machine (from its CMID) or a KMS host (from its key) in an IID."""
    return int.from_bytes(hashlib.sha256(source.lower().encode()).digest()[:4], "big")


def host_key_tag(public_raw: bytes) -> int:
    """72 bits of SHA-256 over a KMS host's raw Ed25519 public key: what binds a phone
    certificate to the key that signs the host's answers."""
    digest = hashlib.sha256(b"ospp-kms-host-key:" + public_raw).digest()
    return int.from_bytes(digest[: HOST_TAG_BITS // 8], "big")


def key_proof(
    security: int,
    version: int,
    product_index: int,
    channel_code: int,
    serial: int,
    hardware: int,
    machine_tag: int,
) -> int:
    """The 60 bits an IID carries in place of the key's security value: HMAC-SHA256 keyed
    with it, over the IID's other fields. Making it needs the key; checking it needs the
    key's security value, which only the holder and the centre have."""
    message = (
        f"ospp-iid-proof:{version}:{product_index}:{channel_code}:{serial}:"
        f"{hardware:010x}:{machine_tag:08x}"
    ).encode("ascii")
    mac = hmac.new(security.to_bytes(8, "big"), message, hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") >> 4


def host_certificate_message(product_index: int, serial: int, key_tag: int) -> bytes:
    """What the phone centre signs for a KMS host key: the public fields of its IID (product,
    channel, key serial, host key tag), never the key's security value."""
    return f"ospp-cid-kms-host-v2:{product_index}:2:{serial}:{key_tag:018x}".encode("ascii")


def damm(digits: str) -> int:
    interim = 0
    for d in digits:
        interim = _DAMM[interim][ord(d) - 48]
    return interim


def _group(data: str, per_group: int) -> list[str]:
    chunks = [data[i : i + per_group] for i in range(0, len(data), per_group)]
    return [chunk + str(damm(chunk)) for chunk in chunks]


# What the messages call the two IDs ("the {what} has 12 digits").
_IID = N_("installation ID")
_CID = N_("confirmation ID")


def _digits(text: str, what: str) -> str:
    compact = "".join(text.split()).replace("-", "")
    if compact and not (compact.isdigit() and compact.isascii()):  # empty: its length says
        bad = next((c for c in compact if not ("0" <= c <= "9")), "")
        raise LicensingError(
            E_BAD_FORMAT,
            N_(
                "the {what} may hold only digits, spaces and dashes; found {bad!r}",
                what=what,
                bad=bad,
            ),
        )
    return compact


def check_group(group: str, index: int, what: str, size: int) -> None:
    """Raise 0xC004F04D naming group ``index`` (1-based) if its check digit is wrong."""
    if len(group) != size or not (group.isascii() and group.isdigit()):
        raise LicensingError(
            E_CID_LENGTH if what == "confirmation ID" else E_BAD_FORMAT,
            N_(
                "group {index} of the {what} must be {size} digits, not {group!r}",
                index=index,
                what=what,
                size=size,
                group=group,
            ),
        )
    if damm(group) != 0:
        raise LicensingError(
            E_CHECK_DIGIT,
            N_(
                "group {index} of the {what} is wrong (its check digit does not match)",
                index=index,
                what=what,
            ),
            N_("Read group {index} again, digit by digit.", index=index),
        )


def _split_checked(text: str, groups: int, per_group: int, what: str, length_code: int) -> str:
    compact = _digits(text, what)
    size = per_group + 1
    if len(compact) != groups * size:
        typed = text.replace("-", " ").split()
        if len(typed) == groups:  # typed group by group: name the group that is not whole
            for i, group in enumerate(typed):
                if len(group) != size:
                    check_group(group, i + 1, what, size)
        raise LicensingError(
            length_code,
            N_(
                "the {what} has {count} digits; it must have {length} ({groups} groups of {size})",
                what=what,
                count=len(compact),
                length=groups * size,
                groups=groups,
                size=size,
            ),
        )
    data = []
    for i in range(groups):
        group = compact[i * size : (i + 1) * size]
        check_group(group, i + 1, what, size)
        data.append(group[:per_group])
    return "".join(data)


@dataclass(frozen=True)
class InstallationId:
    """An IID's fields. Build one with :meth:`for_key` or :meth:`for_host`, which put the
    key's proof in it; the constructor takes ``key_check`` as it stands in the digits."""

    product_index: int
    channel_code: int
    serial: int
    key_check: int  # the key proof (versions 1 and 2: the key's security value itself)
    hardware: int  # 40-bit hardware hash (hosts: the high 40 bits of the host key tag)
    machine_tag: int  # 32 bits from the CMID (hosts: the low 32 bits of the host key tag)
    version: int = IID_VERSION

    @classmethod
    def for_key(
        cls,
        product_index: int,
        channel_code: int,
        serial: int,
        security: int,
        hardware: int,
        machine_tag: int,
        version: int = IID_VERSION,
    ) -> InstallationId:
        """The IID of a key on a machine. ``version`` KEY_IID_VERSION gives the IID older ospp
        read out, for a CID the centre made from one."""
        check = security
        if version not in (KEY_IID_VERSION, KEY_HOST_IID_VERSION):
            check = key_proof(
                security, version, product_index, channel_code, serial, hardware, machine_tag
            )
        return cls(product_index, channel_code, serial, check, hardware, machine_tag, version)

    @classmethod
    def for_host(
        cls, product_index: int, serial: int, security: int, key_tag: int
    ) -> InstallationId:
        """The IID of a KMS host key, bound to the host's signing key by ``key_tag``."""
        return cls.for_key(
            product_index,
            IID_CHANNEL_KMS_HOST,
            serial,
            security,
            key_tag >> 32,  # 40 bits where a machine's IID holds its hardware hash
            key_tag & ((1 << 32) - 1),  # 32 bits where it holds its machine tag
            HOST_IID_VERSION,
        )

    def proves(self, security: int) -> bool:
        """Whether the IID was made with the key whose security value is ``security``."""
        expected = InstallationId.for_key(
            self.product_index,
            self.channel_code,
            self.serial,
            security,
            self.hardware,
            self.machine_tag,
            self.version,
        ).key_check
        return hmac.compare_digest(expected.to_bytes(8, "big"), self.key_check.to_bytes(8, "big"))

    @property
    def host_key_tag(self) -> int:
        return self.hardware << 32 | self.machine_tag

    def number(self) -> int:
        n = self.version
        for value, bits in (
            (self.product_index, 8),
            (self.channel_code, 2),
            (self.serial, 32),
            (self.key_check, 60),
            (self.hardware, 40),
            (self.machine_tag, 32),
        ):
            if not 0 <= value < 1 << bits:
                raise ValueError("installation ID field out of range")
            n = n << bits | value
        return n

    def data_digits(self) -> str:
        return str(self.number()).zfill(IID_GROUPS * IID_GROUP_DATA)

    def groups(self) -> list[str]:
        return _group(self.data_digits(), IID_GROUP_DATA)

    def text(self) -> str:
        return "".join(self.groups())

    def message(self) -> bytes:
        """What the phone centre signs."""
        if self.version in HOST_VERSIONS:
            return host_certificate_message(self.product_index, self.serial, self.host_key_tag)
        return b"ospp-cid-v1:" + self.data_digits().encode("ascii")

    @classmethod
    def parse(cls, text: str) -> InstallationId:
        data = _split_checked(text, IID_GROUPS, IID_GROUP_DATA, _IID, E_BAD_FORMAT)
        n = int(data)
        fields = []
        for bits in (32, 40, 60, 32, 2, 8):
            fields.append(n & ((1 << bits) - 1))
            n >>= bits
        tag, hw, check, serial, channel, product = fields
        if n not in (IID_VERSION, KEY_IID_VERSION, *HOST_VERSIONS):
            raise LicensingError(
                E_BAD_FORMAT, N_("installation ID version {version} is not known", version=n)
            )
        if n in HOST_VERSIONS and channel != IID_CHANNEL_KMS_HOST:
            raise LicensingError(
                E_BAD_FORMAT,
                N_("a version {version} installation ID is for KMS host keys only", version=n),
            )
        if n == IID_VERSION and channel == IID_CHANNEL_KMS_HOST:
            raise LicensingError(
                E_BAD_FORMAT,
                N_("a version {version} installation ID is not for KMS host keys", version=n),
            )
        return cls(product, channel, serial, check, hw, tag, n)


def encode_cid(r: int, s: int) -> str:
    if not (0 < r < 1 << 160 and 0 < s < 1 << 160):
        raise ValueError("signature out of range")
    data = str(r << 160 | s).zfill(CID_GROUPS * CID_GROUP_DATA)
    return "".join(_group(data, CID_GROUP_DATA))


def parse_cid(text: str) -> tuple[int, int]:
    data = _split_checked(text, CID_GROUPS, CID_GROUP_DATA, _CID, E_CID_LENGTH)
    n = int(data)
    r, s = n >> 160, n & ((1 << 160) - 1)
    if r >> 160 or not r or not s:
        raise LicensingError(
            E_MISMATCH,
            N_("the confirmation ID does not hold a valid signature"),
            CID_ORDER_HINT,
        )
    return r, s


# Two groups swapped each keep their check digit: only the signature shows it.
CID_ORDER_HINT = N_(
    "Check that the confirmation ID's groups were typed in the order they were read."
)


def format_groups(text: str, size: int) -> str:
    """Digits as groups separated by dashes, for reading aloud."""
    return "-".join(text[i : i + size] for i in range(0, len(text), size))


class TooManyGroups(LicensingError):
    """A line typed into a :class:`GroupEntry` holds more digits than the ID has left."""


class GroupEntry:
    """Digits typed group by group, as a person reads them over the phone.

    Each :meth:`feed` takes whatever was typed at one prompt: one group, several, or a whole
    pasted ID (spaces and dashes ignored). Groups are checked as they come; good ones are kept,
    and the first wrong one is reported (the rest of that line is dropped), so only a wrong
    group is asked for again. Used by ``actcid --interactive``, the wizard and the operator's
    console alike.
    """

    def __init__(self, groups: int, per_group: int, what: str) -> None:
        self.total = groups
        self.size = per_group + 1
        self.what = what
        self.groups: list[str] = []

    @property
    def done(self) -> bool:
        return len(self.groups) >= self.total

    @property
    def index(self) -> int:
        """The 1-based number of the group asked for next."""
        return len(self.groups) + 1

    def feed(self, typed: str) -> LicensingError | None:
        """Take one line; returns the error for a wrong group (None if all were good)."""
        compact = "".join(typed.split()).replace("-", "")
        if not compact:
            return LicensingError(
                E_CID_LENGTH if self.what == "confirmation ID" else E_BAD_FORMAT,
                N_("group {index} of the {what} is empty", index=self.index, what=self.what),
            )
        chunks = [compact[i : i + self.size] for i in range(0, len(compact), self.size)]
        left = self.total - len(self.groups)
        if len(chunks) > left:  # an extra group, or an ID pasted twice: nothing of it is kept
            return TooManyGroups(
                E_CID_LENGTH if self.what == "confirmation ID" else E_BAD_FORMAT,
                N_(
                    "the {what} has {left} group(s) left from group {index}, and this line "
                    "holds {typed} characters, more than {most}",
                    what=self.what,
                    left=left,
                    index=self.index,
                    typed=len(compact),
                    most=left * self.size,
                ),
                N_("Type the line again without the extra digits."),
            )
        first = self.index
        for chunk in chunks:
            try:
                check_group(chunk, self.index, self.what, self.size)
            except LicensingError as exc:
                return self._short_group(typed, first) or exc
            self.groups.append(chunk)
        return None

    def _short_group(self, typed: str, first: int) -> LicensingError | None:
        """When a line typed with separators went wrong, a group among them left a digit
        short explains it better than the check digit that fails after it: every later digit
        moved. That group is the last part to begin where a group begins, when the digits
        typed are not whole groups; what the line added from it on is dropped (a moved chunk
        may pass its check digit by chance)."""
        parts = typed.replace("-", " ").split()
        if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
            return None
        typed_digits, start, short = 0, 0, ""
        for part in parts:
            if typed_digits % self.size == 0:
                start, short = typed_digits, part
            typed_digits += len(part)
        if typed_digits % self.size == 0 or len(short) >= self.size:
            return None  # whole groups: a wrong digit, not a missing one
        index = first + start // self.size
        del self.groups[index - 1 :]
        try:
            check_group(short, index, self.what, self.size)
        except LicensingError as exc:
            return exc
        return None  # unreachable: the group is short

    def text(self) -> str:
        """The groups so far, dash-separated."""
        return "-".join(self.groups)


def cid_entry() -> GroupEntry:
    return GroupEntry(CID_GROUPS, CID_GROUP_DATA, _CID)


def iid_entry() -> GroupEntry:
    return GroupEntry(IID_GROUPS, IID_GROUP_DATA, _IID)
