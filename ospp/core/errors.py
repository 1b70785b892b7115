"""The one error root of ospp, the licensing codes it carries, and the exit statuses.

Every failure a user can meet is an :class:`OsppError` with a licensing code (the HRESULT the
real Software Licensing Service would report), a message saying what was found and what was
expected, and where it helps a hint. The CLI catches :class:`OsppError` in one place.

Messages and hints are English. Those a dialogue may show (the wizard, the agent's console) are
written ``N_("the key ending {last5} has been blocked", last5=...)``: a :class:`Message`, an
ordinary ``str`` holding the English text that also remembers its message id and values, so
that ``ospp.cli.i18n`` can word it in the dialogue's language. Nothing below the CLI translates.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any


class Message(str):
    """English text (what ``str()`` gives, byte for byte) that keeps its message id and values
    for translation at the CLI edge. Make one with :func:`N_`."""

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, params: dict[str, Any]) -> Message:
        made = super().__new__(cls, msgid.format(**params) if params else msgid)
        made.msgid = msgid
        made.params = params
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return (Message, (self.msgid, self.params))


def N_(msgid: str, /, **params: Any) -> Message:  # gettext's name for the marker
    """Mark ``msgid`` (with ``{name}`` placeholders) for translation; the English text now."""
    return Message(msgid, params)


class ExitStatus(enum.IntEnum):
    """Process exit statuses; documented in --help, the man page and the README."""

    OK = 0
    LICENSING = 1  # the licensing check said no (invalid key, activation refused, ...)
    USAGE = 2  # the command line was wrong (click's own status for usage errors)
    STORE = 3  # the licence store or another local file could not be used
    NETWORK = 4  # a server (authority, KMS host, DNS) could not be reached
    INTERRUPTED = 130  # Ctrl+C (128 + SIGINT), as shells report it
    INTERNAL = 70  # a bug in ospp (EX_SOFTWARE)


# Which failure a command over many machines reports when they failed in different ways: the
# first kind here that any machine met (a command line or environment that is wrong for every
# machine, then a store that cannot be used, then a server that could not be reached, then the
# licensing check's no), so its exit status follows from what failed, never from which
# machine failed first. README "Exit status" documents it.
PRECEDENCE = (ExitStatus.USAGE, ExitStatus.STORE, ExitStatus.NETWORK, ExitStatus.LICENSING)


# -- the licensing codes -------------------------------------------------------------------
# Every code ospp can print or send is named here, once; DESCRIPTIONS holds its wording
# (ospp.vbs /ddescr prints it). Codes are HRESULTs: 0xC004... from the Software Licensing
# Service, 0x8007xxxx a Win32 error (0x80072xxx DNS), 0x80072EFD WinINet, 0x4004... information.

# product keys
E_INVALID_KEY = 0xC004F050  # the key does not decode, or is for another channel
E_KEY_BLOCKED = 0xC004F051
E_KEY_NOT_AVAILABLE = 0xC004F014  # no (suitable) key is installed
E_SKU_NOT_FOUND = 0xC004F069
E_NOT_VOLUME = 0xC004F035  # Active Directory activation (/actype:1)
# the activation authority
E_SERVER_INVALID_KEY = 0xC004C001
E_SERVER_BLOCKED = 0xC004C003
E_UNLOCK_LIMIT = 0xC004C008
E_MAK_LIMIT = 0xC004C020
# KMS
E_NO_KMS = 0xC004F074  # no KMS host could be reached or none answered usefully
E_COUNT_LOW = 0xC004F038
E_KMS_DISABLED = 0xC004F039
E_HOST_NOT_ACTIVATED = 0xC004F041
E_CANNOT_USE = 0xC004F042  # the host's certificate or answer cannot be believed
E_SKEW = 0xC004F06C
E_KMS_REFUSED = 0xC004F056  # a malformed request; a product KMS cannot activate this way
# DNS (Win32 DNS errors as HRESULTs)
E_DNS_NAME = 0x8007232B  # no SRV record in any searched domain
E_DNS_NO_RECORDS = 0x8007251D
E_DNS_FAILURE = 0x8007232A  # server failure or timeout
E_DNS_REFUSED = 0x8007232D  # a dynamic update was refused
E_DNS_NOT_AUTH = 0x80072331  # the server is not authoritative (or the TSIG key is unknown)
E_DNS_BAD_KEY = 0x80072339  # the TSIG exchange failed
# status, grace and hardware
E_GRACE_EXPIRED = 0xC004F009
E_HARDWARE = 0xC004F00F
E_REARM_LIMIT = 0xC004D307
E_UNTRUSTED = 0xC004E003  # licence evaluation failed: tampered or from an untrusted authority
E_NEEDS_ADMIN = 0xC004F025
# phone activation and offline data
E_BAD_FORMAT = 0xC004F02C  # offline data (an IID, a frame on the wire) is malformed
E_CID_LENGTH = 0xC004F02F
E_MISMATCH = 0xC004F031
E_CHECK_DIGIT = 0xC004F04D
# local files, arguments and the network
E_NO_MACHINE = 0x800706BA  # what ospp.vbs reports for a computer it cannot reach
E_ACCESS_DENIED = 0x80070005  # a store file or directory that cannot be read or written
E_INVALID_DATA = 0x8007000D  # a store file that is not what ospp wrote (garbage, newer schema)
E_INVALID_ARG = 0x80070057  # a value on the command line or in the environment is malformed
E_DISK_FULL = 0x80070070  # a store or state file cannot be written: no space left on the disk
E_NO_CONNECTION = 0x80072EFD  # a server could not be reached (WinINet's wording)
E_ADDRESS_IN_USE = 0x80072740  # WSAEADDRINUSE: a port to listen on is taken on this machine
E_ADDRESS_NOT_AVAILABLE = 0x80072741  # WSAEADDRNOTAVAIL: no such address on this machine
E_ALREADY_RUNNING = 0x80070420  # ERROR_SERVICE_ALREADY_RUNNING: a server already serves a store
E_UNEXPECTED = 0x8000FFFF  # a server failed on a request (a bug on its side)
# information (bit 31 clear): printed as the status of a licence, not as a failure
I_OOB = 0x4004F00C
I_OOT = 0x4004F00D
I_KMS_LICENSED = 0x4004F040

DESCRIPTIONS: dict[int, str] = {
    E_INVALID_KEY: "The Software Licensing Service reported that the product key is invalid.",
    E_KEY_BLOCKED: "The Software Licensing Service reported that the product key is blocked.",
    E_SERVER_BLOCKED: "The activation server determined the specified product key is blocked.",
    E_SERVER_INVALID_KEY: "The activation server determined the specified product key is invalid.",
    E_UNLOCK_LIMIT: "The activation server reported that the product key has exceeded its "
    "unlock limit.",
    E_MAK_LIMIT: "The activation server reported that the Multiple Activation Key has exceeded "
    "its limit.",
    E_NO_KMS: "The Software Licensing Service reported that the computer could not be "
    "activated. No Key Management Service (KMS) could be contacted. Please see the "
    "Application Event Log for additional information.",
    E_DNS_NAME: "DNS name does not exist.",
    E_DNS_NO_RECORDS: "No records found for DNS query.",
    E_DNS_FAILURE: "DNS server failure.",
    E_DNS_REFUSED: "DNS operation refused.",
    E_DNS_NOT_AUTH: "DNS server not authoritative for zone.",
    E_DNS_BAD_KEY: "DNS bad key.",
    E_COUNT_LOW: "The Software Licensing Service reported that the computer could not be "
    "activated. The count reported by your Key Management Service (KMS) is insufficient. "
    "Please contact your system administrator.",
    E_KMS_DISABLED: "The Software Licensing Service reported that the computer could not be "
    "activated. The Key Management Service (KMS) is not enabled.",
    E_HOST_NOT_ACTIVATED: "The Software Licensing Service determined that the Key Management "
    "Service (KMS) is not activated. KMS needs to be activated.",
    E_CANNOT_USE: "The Software Licensing Service determined that the specified Key Management "
    "Service (KMS) cannot be used.",
    E_SKEW: "The Software Licensing Service reported that the request timestamp is invalid.",
    E_KMS_REFUSED: "The Software Licensing Service reported that the product could not be "
    "activated using the Key Management Service (KMS).",
    E_KEY_NOT_AVAILABLE: "The Software Licensing Service reported that the product key is not "
    "available.",
    E_GRACE_EXPIRED: "The Software Licensing Service reported that the grace period expired.",
    E_HARDWARE: "The Software Licensing Service reported that the hardware ID binding is beyond "
    "level of tolerance.",
    E_BAD_FORMAT: "The Software Licensing Service reported that the format for the offline "
    "activation data is incorrect.",
    E_CID_LENGTH: "The Software Licensing Service reported that the length of the offline "
    "confirmation ID is incorrect.",
    E_MISMATCH: "The Software Licensing Service reported that the specified installation ID "
    "and confirmation ID do not match.",
    E_CHECK_DIGIT: "The Software Licensing Service reported that the installation ID or the "
    "confirmation ID is invalid.",
    E_NEEDS_ADMIN: "The Software Licensing Service reported that the action requires "
    "administrator privilege.",
    E_REARM_LIMIT: "The maximum allowed number of re-arms has been exceeded. You must re-install "
    "the OS before trying to re-arm again.",
    E_UNTRUSTED: "The Software Licensing Service reported that license evaluation failed.",
    E_NOT_VOLUME: "The Software Licensing Service reported that the computer could not be "
    "activated with a Volume license product key.",
    E_SKU_NOT_FOUND: "The Software Licensing Service reported that the computer could not be "
    "activated. The product SKU is not found.",
    E_ACCESS_DENIED: "Access is denied.",
    E_INVALID_DATA: "The data is invalid.",
    E_NO_MACHINE: "The RPC server is unavailable.",
    E_INVALID_ARG: "The parameter is incorrect.",
    E_DISK_FULL: "There is not enough space on the disk.",
    E_NO_CONNECTION: "A connection with the server could not be established",
    E_ADDRESS_IN_USE: "Only one usage of each socket address (protocol/network address/port) "
    "is normally permitted.",
    E_ADDRESS_NOT_AVAILABLE: "The requested address is not valid in its context.",
    E_ALREADY_RUNNING: "An instance of the service is already running.",
    E_UNEXPECTED: "Catastrophic failure",
    I_OOB: "The Software Licensing Service reported that the application is running "
    "within the valid grace period.",
    I_OOT: "The Software Licensing Service reported that the application is running "
    "within the valid out of tolerance grace period.",
    I_KMS_LICENSED: "The Software Licensing Service reported that the product was activated "
    "but the owner should verify the Product Use Rights.",
}

# Codes that are information, not failure (bit 31 clear).
INFORMATIONAL = frozenset(code for code in DESCRIPTIONS if not code & 0x80000000)


def hex_code(code: int) -> str:
    """Format a licensing code the way ospp.vbs prints it: ``0xC004F074``."""
    return f"0x{code:08X}"


def os_error_code(exc: BaseException) -> int:
    """The licensing code for a failed file operation: disk full, else access denied."""
    import errno

    full = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return E_DISK_FULL if getattr(exc, "errno", None) in full else E_ACCESS_DENIED


def describe(code: int) -> str:
    """The Software Licensing Service wording for ``code``; raises KeyError when unknown."""
    return DESCRIPTIONS[code]


class OsppError(Exception):
    """Root of every error a user can meet.

    ``code`` is the licensing code (an HRESULT); ``message`` says what was found and what was
    expected; ``hint`` what to try next. ``exit_status`` tells scripts what kind of failure it is.
    """

    exit_status = ExitStatus.LICENSING

    def __init__(self, code: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    @property
    def description(self) -> str:
        return DESCRIPTIONS.get(self.code, "")

    def to_json(self) -> dict[str, object]:
        return {
            "code": hex_code(self.code),
            "code_int": self.code,
            "description": self.description,
            "message": self.message,
            "hint": self.hint,
            "exit_status": int(self.exit_status),
        }


def reported(errors: Iterable[OsppError]) -> OsppError | None:
    """The failure that stands for ``errors`` (each machine's, in machine order): the first of
    the kind that comes first in :data:`PRECEDENCE`; None when there is none."""
    first: dict[int, OsppError] = {}
    for error in errors:
        first.setdefault(int(error.exit_status), error)
    rank = {int(status): n for n, status in enumerate(PRECEDENCE)}
    return min(first.values(), key=lambda e: rank.get(int(e.exit_status), len(rank)), default=None)


class LicensingError(OsppError):
    """The licensing check said no: a bad key, a refused activation, a mismatched CID."""


class StoreError(OsppError):
    """The licence store (or another local state file) cannot be read or written."""

    exit_status = ExitStatus.STORE


class NetworkError(OsppError):
    """A server (authority, KMS host, DNS server) could not be reached or answered badly."""

    exit_status = ExitStatus.NETWORK


class UsageError(OsppError):
    """A command-line value (or an environment variable) is malformed."""

    exit_status = ExitStatus.USAGE

    def __init__(self, message: str, hint: str | None = None, code: int = E_INVALID_ARG) -> None:
        super().__init__(code, message, hint)


E_CANCELLED = 0x800704C7
DESCRIPTIONS[E_CANCELLED] = "The operation was canceled by the user."


class Cancelled(OsppError):
    """The person at the keyboard stopped (Ctrl+C, or the end of input). ``kept`` says what
    stayed done; by default nothing was changed."""

    def __init__(self, interrupted: bool, kept: str | None = None) -> None:
        how = N_("interrupted (Ctrl+C)") if interrupted else N_("input ended")
        kept = kept or N_("nothing was changed")
        super().__init__(E_CANCELLED, N_("cancelled: {how}; {kept}", how=how, kept=kept))
        self.exit_status = ExitStatus.INTERRUPTED if interrupted else ExitStatus.LICENSING


class InternalError(OsppError):
    """A bug in ospp, reported as an error (for --json) rather than as a traceback."""

    exit_status = ExitStatus.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(
            E_UNEXPECTED,
            f"internal error: {message}",
            "This is a bug in ospp; rerun with OSPP_DEBUG=1 to see where.",
        )
