"""Trust anchors: which activation authorities a client or a KMS host believes, and the check
of a licence they signed.

A client's anchors are ``<OSPP_HOME>/trust/*.json`` (installed with ``ospp trust add``) plus,
when no remote authority is configured (``OSPP_AUTHORITY``), the local authority's public key
file in ``OSPP_CENTER_HOME``. An empty set of anchors is an error, never a pass.
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ospp.core.canonical import canonical, load_json
from ospp.core.digest import sha256
from ospp.core.errors import E_UNTRUSTED, N_, LicensingError, OsppError, UsageError
from ospp.core.files import read_state_file, read_user_file, write_atomic
from ospp.core.paths import StrPath, center_home, exists, is_dir

if TYPE_CHECKING:
    from ospp.protocol.crypto import PublicBundle


Anchors = Mapping[str, "PublicBundle"]


def trust_dir(home: StrPath) -> str:
    return os.path.join(home, "trust")


def anchor_files(home: StrPath, environ: Mapping[str, str]) -> list[str]:
    """The trust anchors' files: <home>/trust/*.json, plus the local authority's public key
    file when no remote authority (OSPP_AUTHORITY) is configured."""
    return _anchor_listing(home, environ)[0]


def _anchor_listing(home: StrPath, environ: Mapping[str, str]) -> tuple[list[str], str | None]:
    """:func:`anchor_files`, and why the trust directory could not be listed (or None)."""
    trust = trust_dir(home)
    files: list[str] = []
    problem = None
    try:
        if is_dir(trust):
            # *.json as a glob finds them: hidden files too, and in any case on Windows
            names = [n for n in os.listdir(trust) if os.path.normcase(n).endswith(".json")]
            files = sorted((os.path.join(trust, n) for n in names), key=os.path.normcase)
    except OSError as exc:  # a trust store that may not be read: named, as a bad anchor is
        problem = f"{trust}: cannot be listed: {exc.strerror or exc}"
    if not environ.get("OSPP_AUTHORITY"):
        files.insert(0, os.path.join(center_home(environ), "authority.pub.json"))
    return [f for f in files if _present(f)], problem


def _present(path: StrPath) -> bool:
    """Whether an anchor file is there; one that cannot even be looked for (a directory that
    may not be entered) counts, so that reading it names it among the unreadable."""
    try:
        return exists(path)
    except OSError:
        return True


def trusted_fingerprints(home: StrPath, environ: Mapping[str, str]) -> list[str]:
    """Fingerprints of the trust anchors, computed as crypto.PublicBundle does, without
    loading ``cryptography`` or OpenSSL (status reads use it to check seals)."""
    found = set()
    for path in anchor_files(home, environ):
        try:
            data = load_json(read_state_file(path).decode("utf-8"))
            # base64.b64decode(..., validate=True), without importing base64
            ed25519 = binascii.a2b_base64(data["ed25519"].encode("ascii"), strict_mode=True)
            raw = ed25519 + data["dsa"].encode("ascii")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            continue  # the full check reports an unreadable anchor
        found.add(sha256(raw).hexdigest()[:16])
    return sorted(found)


class AnchorSet(dict[str, "PublicBundle"]):
    """Trusted authority keys by fingerprint, and the anchor files that could not be read.

    One bad file (garbage, ``[]``, a truncated copy) must not break activations that the
    other anchors can verify: it is left out and named in ``unreadable``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.unreadable: list[str] = []


def anchors(home: StrPath, environ: Mapping[str, str]) -> AnchorSet:
    """Trusted authority keys by fingerprint (may be empty: callers fail closed)."""
    from ospp.protocol.crypto import PublicBundle

    found = AnchorSet()
    files, problem = _anchor_listing(home, environ)
    if problem is not None:
        found.unreadable.append(problem)
    for path in files:
        try:
            data = load_json(read_state_file(path).decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("it holds no authority public key (not a JSON object)")
            bundle = PublicBundle.from_json(data)
        except OSError as exc:  # a FIFO or a directory in its place too: never waited on
            found.unreadable.append(f"{path}: cannot be read: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError:
            found.unreadable.append(f"{path}: it is not UTF-8 text")
            continue
        except (OsppError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = exc.message if isinstance(exc, OsppError) else str(exc)
            found.unreadable.append(f"{path}: {why}")
            continue
        found[bundle.fingerprint] = bundle
    return found


def require_anchors(found: AnchorSet) -> AnchorSet:
    """``found``, or LicensingError 0xC004E003 when it is empty (fail closed)."""
    if not found:
        if found.unreadable:
            raise LicensingError(
                E_UNTRUSTED,
                N_(
                    "no trusted activation authority: the trust store is empty; unreadable: "
                    "{files}",
                    files="; ".join(found.unreadable),
                ),
                N_(
                    "Install the authority's public key: ospp trust add authority.pub.json "
                    "(from 'ospp center pubkey' on the authority), and remove or replace the "
                    "unreadable files."
                ),
            )
        raise LicensingError(
            E_UNTRUSTED,
            N_("no trusted activation authority: the trust store is empty"),
            N_(
                "Install the authority's public key: ospp trust add authority.pub.json "
                "(from 'ospp center pubkey' on the authority)."
            ),
        )
    return found


def add_anchor(home: StrPath, source: StrPath, text: str | None = None) -> PublicBundle:
    """Install the authority public key file ``source`` as a trust anchor of ``home``.

    ``text``, when given, is the file's content (read from standard input, say); ``source``
    then only names it in messages.
    """
    from ospp.protocol.crypto import PublicBundle

    text = read_user_file(source, "authority public key file")
    try:
        bundle = PublicBundle.from_json(load_json(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{source} is not an authority public key file: {exc}") from exc
    target = trust_dir(home)
    os.makedirs(target, mode=0o700, exist_ok=True)
    path = os.path.join(target, f"{bundle.fingerprint}.json")
    write_atomic(path, json.dumps(bundle.to_json(), indent=2) + "\n")
    return bundle


def verify_licence(lic_payload: Mapping[str, Any], signature: str, trusted: Anchors) -> str | None:
    """Return why a signed licence is not acceptable, or None."""
    from ospp.protocol.crypto import unb64

    authority = lic_payload.get("authority")
    bundle = trusted.get(authority) if isinstance(authority, str) else None
    if bundle is None:  # 1. issued by an authority we trust
        # what the peer named, escaped and cut short: it is shown, and kept in the history
        return f"the licence was issued by authority {_named(authority)}, which is not trusted"
    try:
        sig = unb64(signature)
    except ValueError:
        return "the licence signature is not base64"
    if not bundle.verify(canonical(lic_payload), sig):  # 2. signed by it, unchanged
        return "the licence signature does not verify: the licence was altered"
    return None


def _named(value: object, limit: int = 40) -> str:
    """A fingerprint a peer sent, as a message shows it: as it is when it is one (16 hex
    digits), else its repr (lone surrogates and control characters escaped), cut short."""
    if isinstance(value, str) and len(value) == 16 and all(c in "0123456789abcdef" for c in value):
        return value
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
