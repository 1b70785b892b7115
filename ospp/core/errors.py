"""The one error root of ospp, the licensing codes it carries, and the exit statuses.

Every failure a user can meet is an :class:`OsppError` with a licensing code (the HRESULT the
real Software Licensing Service would report), a message saying what was found and what was
expected, and where it helps a hint. The CLI catches :class:`OsppError` in one place.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Process exit statuses; documented in --help, the man page and the README."""

    OK = 0
    LICENSING = 1  # the licensing check said no (invalid key, activation refused, ...)
    USAGE = 2  # the command line was wrong (click's own status for usage errors)
    STORE = 3  # the licence store or another local file could not be used
    NETWORK = 4  # a server (authority, KMS host, DNS) could not be reached


# Descriptions as the Software Licensing Service words them (ospp.vbs /ddescr prints these).
DESCRIPTIONS: dict[int, str] = {
    0xC004F050: "The Software Licensing Service reported that the product key is invalid.",
    0xC004F051: "The Software Licensing Service reported that the product key is blocked.",
    0xC004C003: "The activation server determined the specified product key is blocked.",
    0xC004C001: "The activation server determined the specified product key is invalid.",
    0xC004C008: "The activation server reported that the product key has exceeded its unlock "
    "limit.",
    0xC004C020: "The activation server reported that the Multiple Activation Key has exceeded "
    "its limit.",
    0xC004F074: "The Software Licensing Service reported that the computer could not be "
    "activated. No Key Management Service (KMS) could be contacted. Please see the "
    "Application Event Log for additional information.",
    0x8007232B: "DNS name does not exist.",
    0x8007251D: "No records found for DNS query.",
    0x8007232A: "DNS server failure.",
    0xC004F038: "The Software Licensing Service reported that the computer could not be "
    "activated. The count reported by your Key Management Service (KMS) is insufficient. "
    "Please contact your system administrator.",
    0xC004F039: "The Software Licensing Service reported that the computer could not be "
    "activated. The Key Management Service (KMS) is not enabled.",
    0xC004F041: "The Software Licensing Service determined that the Key Management Service "
    "(KMS) is not activated. KMS needs to be activated.",
    0xC004F042: "The Software Licensing Service determined that the specified Key Management "
    "Service (KMS) cannot be used.",
    0xC004F06C: "The Software Licensing Service reported that the request timestamp is invalid.",
    0xC004F056: "The Software Licensing Service reported that the product could not be "
    "activated using the Key Management Service (KMS).",
    0xC004F014: "The Software Licensing Service reported that the product key is not available.",
    0xC004F009: "The Software Licensing Service reported that the grace period expired.",
    0xC004F00F: "The Software Licensing Service reported that the hardware ID binding is beyond "
    "level of tolerance.",
    0xC004F02C: "The Software Licensing Service reported that the format for the offline "
    "activation data is incorrect.",
    0xC004F02F: "The Software Licensing Service reported that the length of the offline "
    "confirmation ID is incorrect.",
    0xC004F031: "The Software Licensing Service reported that the specified installation ID "
    "and confirmation ID do not match.",
    0xC004F04D: "The Software Licensing Service reported that the installation ID or the "
    "confirmation ID is invalid.",
    0xC004F025: "The Software Licensing Service reported that the action requires "
    "administrator privilege.",
    0xC004D307: "The maximum allowed number of re-arms has been exceeded. You must re-install "
    "the OS before trying to re-arm again.",
    0xC004E003: "The Software Licensing Service reported that license evaluation failed.",
    0xC004F035: "The Software Licensing Service reported that the computer could not be "
    "activated with a Volume license product key.",
    0xC004F069: "The Software Licensing Service reported that the computer could not be "
    "activated. The product SKU is not found.",
    0x80070005: "Access is denied.",
    0x8007000D: "The data is invalid.",
    0x4004F00C: "The Software Licensing Service reported that the application is running "
    "within the valid grace period.",
    0x4004F00D: "The Software Licensing Service reported that the application is running "
    "within the valid out of tolerance grace period.",
    0x4004F040: "The Software Licensing Service reported that the product was activated but the "
    "owner should verify the Product Use Rights.",
}

# Codes that are information, not failure (bit 31 clear).
INFORMATIONAL = frozenset(code for code in DESCRIPTIONS if not code & 0x80000000)


def hex_code(code: int) -> str:
    """Format a licensing code the way ospp.vbs prints it: ``0xC004F074``."""
    return f"0x{code:08X}"


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


class LicensingError(OsppError):
    """The licensing check said no: a bad key, a refused activation, a mismatched CID."""


class StoreError(OsppError):
    """The licence store (or another local state file) cannot be read or written."""

    exit_status = ExitStatus.STORE


class NetworkError(OsppError):
    """A server (authority, KMS host, DNS server) could not be reached or answered badly."""

    exit_status = ExitStatus.NETWORK


E_ACCESS_DENIED = 0x80070005  # a store file or directory that cannot be read or written
E_INVALID_DATA = 0x8007000D  # a store file that is not what ospp wrote (garbage, newer schema)
E_INVALID_ARG = 0x80070057  # a value on the command line or in the environment is malformed
E_DISK_FULL = 0x80070070  # a store or state file cannot be written: no space left on the disk
DESCRIPTIONS[E_INVALID_ARG] = "The parameter is incorrect."
DESCRIPTIONS[E_DISK_FULL] = "There is not enough space on the disk."


def os_error_code(exc: BaseException) -> int:
    """The licensing code for a failed file operation: disk full, else access denied."""
    import errno

    full = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return E_DISK_FULL if getattr(exc, "errno", None) in full else E_ACCESS_DENIED


class UsageError(OsppError):
    """A command-line value (or an environment variable) is malformed."""

    exit_status = ExitStatus.USAGE

    def __init__(self, message: str, hint: str | None = None, code: int = E_INVALID_ARG) -> None:
        super().__init__(code, message, hint)
