"""Installation IDs (IID) and confirmation IDs (CID): the digits read over the phone.

IID: 9 groups of 7 digits. Each group is 6 data digits and a Damm check digit, which catches
every single mistyped digit and every swap of two adjacent digits in the group (the groups and
their check digits are :mod:`ospp.protocol.digit_groups`). The 54 data digits hold a 177-bit
number:

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
    E_CID_LENGTH,
    E_MISMATCH,
    N_,
    LicensingError,
)
from ospp.protocol.digit_groups import GroupEntry, split_checked, with_check_digits

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


# What the messages call the two IDs ("the {what} has 12 digits").
_IID = N_("installation ID")
_CID = N_("confirmation ID")


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
        return with_check_digits(self.data_digits(), IID_GROUP_DATA)

    def text(self) -> str:
        return "".join(self.groups())

    def message(self) -> bytes:
        """What the phone centre signs."""
        if self.version in HOST_VERSIONS:
            return host_certificate_message(self.product_index, self.serial, self.host_key_tag)
        return b"ospp-cid-v1:" + self.data_digits().encode("ascii")

    @classmethod
    def parse(cls, text: str) -> InstallationId:
        data = split_checked(text, IID_GROUPS, IID_GROUP_DATA, _IID, E_BAD_FORMAT)
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
    return "".join(with_check_digits(data, CID_GROUP_DATA))


def parse_cid(text: str) -> tuple[int, int]:
    data = split_checked(text, CID_GROUPS, CID_GROUP_DATA, _CID, E_CID_LENGTH)
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


def cid_entry() -> GroupEntry:
    return GroupEntry(CID_GROUPS, CID_GROUP_DATA, _CID)


def iid_entry() -> GroupEntry:
    return GroupEntry(IID_GROUPS, IID_GROUP_DATA, _IID)
