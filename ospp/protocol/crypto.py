"""Every use of ``cryptography.hazmat`` in ospp lives here.

Two signature schemes, chosen for what they sign:
- licences and protocol responses: Ed25519 (64-byte signatures, fast, nothing to tune);
- phone confirmation IDs: DSA with a 1024-bit prime and a 160-bit subgroup, the shortest
  standard signature ``cryptography`` offers (r and s are 160 bits each, 320 bits in all), so a
  CID is 97 decimal digits of signature. Its security level is about 80 bits; see docs/PHONE.md.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ospp.protocol.edpoint import usable_ed25519_key


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


MAX_AUTHORITY_NAME = 300  # characters


def valid_authority_name(name: object) -> bool:
    """An authority's name as clients show it: 1-300 printable characters."""
    return isinstance(name, str) and 0 < len(name) <= MAX_AUTHORITY_NAME and name.isprintable()


@dataclass(frozen=True)
class PublicBundle:
    """An authority's public keys: what a client installs as its trust anchor."""

    name: str
    ed25519: bytes  # raw 32-byte public key
    dsa_pem: bytes  # SubjectPublicKeyInfo PEM

    @property
    def fingerprint(self) -> str:
        """SHA-256 over both public keys, first 16 hex digits: names the authority."""
        return hashlib.sha256(self.ed25519 + self.dsa_pem).hexdigest()[:16]

    def to_json(self) -> dict[str, str]:
        return {
            "format": "ospp-authority-v1",
            "name": self.name,
            "ed25519": b64(self.ed25519),
            "dsa": self.dsa_pem.decode("ascii"),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> PublicBundle:
        if data.get("format") != "ospp-authority-v1":
            raise ValueError("not an ospp authority public key file (format ospp-authority-v1)")
        name = data["name"]
        if not valid_authority_name(name):
            raise ValueError(f"the name is not 1-{MAX_AUTHORITY_NAME} printable characters")
        bundle = cls(name, unb64(data["ed25519"]), data["dsa"].encode("ascii"))
        ed25519.Ed25519PublicKey.from_public_bytes(bundle.ed25519)  # 1. well-formed keys
        if not usable_ed25519_key(bundle.ed25519):
            raise ValueError("the ed25519 key is one anyone can sign under (of small order)")
        key = serialization.load_pem_public_key(bundle.dsa_pem)
        if not isinstance(key, dsa.DSAPublicKey):
            raise ValueError("the dsa entry is not a DSA public key")
        if data.get("fingerprint") not in (None, bundle.fingerprint):  # 2. consistent name
            raise ValueError("the fingerprint does not match the keys")
        return bundle

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check an Ed25519 signature made by this authority's licence key."""
        return verify_ed25519(self.ed25519, message, signature)

    def verify_cid(self, message: bytes, r: int, s: int) -> bool:
        """Check a DSA signature (r, s) over ``message`` made by the phone centre."""
        key = serialization.load_pem_public_key(self.dsa_pem)
        assert isinstance(key, dsa.DSAPublicKey)
        try:
            key.verify(encode_dss_signature(r, s), message, hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


class AuthorityKeys:
    """The authority's private keys. Only the authority process ever loads these."""

    def __init__(self, name: str, ed_pem: bytes, dsa_pem: bytes, secret: bytes) -> None:
        ed = serialization.load_pem_private_key(ed_pem, password=None)
        ds = serialization.load_pem_private_key(dsa_pem, password=None)
        if not isinstance(ed, ed25519.Ed25519PrivateKey) or not isinstance(ds, dsa.DSAPrivateKey):
            raise ValueError("authority key files hold the wrong kind of key")
        self.name = name
        self._ed = ed
        self._dsa = ds
        self.secret = secret
        self.public = PublicBundle(
            name,
            ed.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
            ds.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    @staticmethod
    def generate() -> tuple[bytes, bytes]:
        """New private keys as PEM: (Ed25519, DSA-1024/160)."""
        pem = serialization.Encoding.PEM
        fmt = serialization.PrivateFormat.PKCS8
        none = serialization.NoEncryption()
        ed = ed25519.Ed25519PrivateKey.generate().private_bytes(pem, fmt, none)
        ds = dsa.generate_private_key(key_size=1024).private_bytes(pem, fmt, none)
        return ed, ds

    def sign(self, message: bytes) -> bytes:
        return self._ed.sign(message)

    def sign_cid(self, message: bytes) -> tuple[int, int]:
        r, s = decode_dss_signature(self._dsa.sign(message, hashes.SHA256()))
        return r, s


def verify_ed25519(public_raw: bytes, message: bytes, signature: bytes) -> bool:
    """Check an Ed25519 signature; a malformed key or signature is simply a failure, and so
    is any signature under a key of small order (``ospp.protocol.edpoint``), which anyone
    can make."""
    if not usable_ed25519_key(public_raw):
        return False
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class HostKey:
    """A KMS host's response-signing key; the authority certifies its public half."""

    def __init__(self, pem: bytes) -> None:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (TypeError, UnsupportedAlgorithm) as exc:  # a passphrase, a key type unknown
            raise ValueError(f"the host key file cannot be loaded: {exc}") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the host key file does not hold an Ed25519 private key")
        self._key = key
        self.public_raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @staticmethod
    def generate() -> bytes:
        return ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
