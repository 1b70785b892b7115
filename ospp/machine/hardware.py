"""The simulated hardware of a machine, judged by the vote-based tolerance model.

``<machine dir>/hardware.json`` lists ten components (edit it, or use ``ospp hardware
change``). Each hashes to 4 bits of a 40-bit hardware hash. Comparing a stored hash with the
current one, every matching component is a vote, the network adapter three; 7 of the 12 votes
keep an activation (4 on a dockable machine). A larger change needs reactivation (0xC004F00F).
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from ospp.core.canonical import load_json
from ospp.core.clock import iso, stored_time
from ospp.core.digest import sha256
from ospp.core.errors import E_ACCESS_DENIED, E_INVALID_DATA, N_, StoreError
from ospp.core.files import locked, read_state_file, write_atomic, write_new
from ospp.core.paths import StrPath, exists
from ospp.core.record import Record
from ospp.protocol.tolerance import (
    COMPONENTS,
    NEEDED,
    NEEDED_DOCKABLE,
    VOTES,
    votes,
    within_tolerance,
)

# The vote rule is shared with the activation authority, so it lives in ospp.protocol;
# it is re-exported here for the machine's other modules.
__all__ = [
    "COMPONENTS",
    "NEEDED",
    "NEEDED_DOCKABLE",
    "VOTES",
    "Hardware",
    "change",
    "load",
    "votes",
    "within_tolerance",
]


class Hardware(Record):
    components: dict[str, str]
    dockable: bool
    changed_at: datetime | None  # when a component last changed (starts OOT grace)

    def hash(self) -> int:
        value = 0
        for name in COMPONENTS:
            value = value << 4 | _nibble(name, self.components[name])
        return value


def _nibble(name: str, value: str) -> int:
    return sha256(f"{name}={value}".encode()).digest()[0] & 0xF


def _random_value() -> str:
    import secrets

    return secrets.token_hex(6)


HARDWARE_FILE = "hardware.json"


def _path(directory: StrPath) -> str:
    return os.path.join(directory, HARDWARE_FILE)


def _fresh() -> dict[str, object]:
    return {
        "components": {name: _random_value() for name in COMPONENTS},
        "dockable": False,
        "changed_at": None,
    }


def _write(path: StrPath, data: dict[str, object]) -> None:
    try:
        write_atomic(path, json.dumps(data, indent=2), private=True)
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            N_("cannot write {path}: {why}", path=str(path), why=str(exc.strerror)),
        ) from exc


def _create(path: StrPath, data: dict[str, object]) -> None:
    """Write a new profile, unless another process just did: then that one is kept, so every
    process that made one at once goes on with the same hardware."""
    try:
        write_new(path, json.dumps(data, indent=2).encode("utf-8"), private=True)
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            N_("cannot write {path}: {why}", path=str(path), why=str(exc.strerror)),
        ) from exc


def load(directory: StrPath) -> Hardware:
    """The machine's hardware profile, created (random components) on first use."""
    path = _path(directory)
    if not exists(path):
        _create(path, _fresh())
    try:
        data = load_json(read_state_file(path).decode("utf-8"))
        components = {name: str(data["components"][name]) for name in COMPONENTS}
        dockable = data.get("dockable", False)
        if not isinstance(dockable, bool):
            raise ValueError(f"'dockable' is {dockable!r}, not true or false")
        # A time with its zone, within the times ospp works with: status reads compute with it
        try:
            changed = stored_time(data.get("changed_at"))
        except ValueError as exc:
            raise ValueError(f"'changed_at': {exc}") from None
        return Hardware(components, dockable, changed)
    except OSError as exc:  # not a regular file, or one that may not be read
        why = str(exc.strerror or exc)
        raise StoreError(
            E_INVALID_DATA,
            N_("the hardware profile {path} cannot be read: {why}", path=str(path), why=why),
            N_("It was left as it is. ospp reads only a regular file it wrote there."),
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            E_INVALID_DATA,
            N_("the hardware profile {path} cannot be read: {why}", path=str(path), why=repr(exc)),
            N_(
                "It needs a 'components' object with {components}, 'dockable' true or false "
                "and 'changed_at' null or a time such as 2027-01-04T09:00:00Z; it was left as it "
                "is.",
                components=", ".join(COMPONENTS),
            ),
        ) from exc


def change(directory: StrPath, names: list[str], now: datetime) -> Hardware:
    """Simulate replacing components (new random values).

    Changes take turns (a lock file beside the profile), so concurrent ones each keep their
    part replaced instead of writing back what the others had replaced.
    """
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        from ospp.core.errors import UsageError

        raise UsageError(
            f"unknown hardware component {unknown[0]!r}",
            f"Components: {', '.join(COMPONENTS)}.",
        )
    load(directory)  # made first if need be, outside the lock
    with locked(_path(directory) + ".lock"):
        return _replace_parts(directory, names, now)


def _replace_parts(directory: StrPath, names: list[str], now: datetime) -> Hardware:
    current = load(directory)
    components = dict(current.components)
    for name in names:
        # A replaced part must register as changed: skip values whose 4-bit hash collides.
        old = _nibble(name, components[name])
        while _nibble(name, value := _random_value()) == old:
            pass
        components[name] = value
    data = {"components": components, "dockable": current.dockable, "changed_at": iso(now)}
    _write(_path(directory), data)
    return load(directory)
