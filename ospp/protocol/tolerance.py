"""The hardware tolerance rule, shared by the client (does an activation still hold?) and
the activation authority (is a reactivation the same computer?).

A hardware hash is 40 bits: 4 per component, in :data:`COMPONENTS` order. Comparing two
hashes, every matching component is a vote, the network adapter three; 7 of the 12 votes
mean the same computer (4 on a dockable machine).
"""

from __future__ import annotations

COMPONENTS = (
    "volume_serial",
    "nic_mac",
    "optical_drive",
    "display_adapter",
    "cpu_serial",
    "disk",
    "scsi_adapter",
    "ide_controller",
    "cpu_model",
    "ram_size",
)
VOTES = {name: 3 if name == "nic_mac" else 1 for name in COMPONENTS}
NEEDED, NEEDED_DOCKABLE = 7, 4


def votes(stored: int, current: int) -> int:
    """How many votes of ``current`` match ``stored`` (0-12)."""
    total = 0
    for i, name in enumerate(reversed(COMPONENTS)):
        if (stored >> 4 * i) & 0xF == (current >> 4 * i) & 0xF:
            total += VOTES[name]
    return total


def within_tolerance(stored: int, current: int, dockable: bool = False) -> bool:
    return votes(stored, current) >= (NEEDED_DOCKABLE if dockable else NEEDED)
