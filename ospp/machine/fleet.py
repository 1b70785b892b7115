"""A fleet of simulated machines, as VAMT manages real ones: create, select, key and remove
(export and import: :mod:`ospp.machine.fleetcsv`).

Machines are selected by a glob over their names (``ws*``); nothing outside it is touched.
Creating many machines takes a fast path: one template store is built with the ordinary store
code (product, KMS settings, key), then each machine gets a copy with its own CMID, written to
a temporary file and linked into place, so a machine appears whole or not at all and an
existing one is never overwritten. Everything streams: memory does not grow with the fleet.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ospp.core.catalog import Channel
from ospp.core.clock import Clock, iso
from ospp.core.errors import (
    E_ACCESS_DENIED,
    E_NO_MACHINE,
    E_SKU_NOT_FOUND,
    OsppError,
    StoreError,
    UsageError,
)
from ospp.core.files import write_new
from ospp.core.paths import LOCAL_MACHINE, StrPath, machine_dir, machine_name, machines_root
from ospp.machine import client
from ospp.machine.hardware import HARDWARE_FILE
from ospp.machine.store import (
    STORE_FILE,
    MachineStore,
    NoMachine,
    holds_store,
    machines_unreadable,
)
from ospp.machine.workers import parallel

MAX_COUNT = 100_000


def _machine_named(name: str) -> bool:
    """Whether a directory called ``name`` is one ospp makes for a machine: a valid computer
    name, in lower case where names are case-sensitive (ospp addresses 'WS2' as 'ws2')."""
    try:
        return machine_name(name) == (name.lower() if os.name == "nt" else name)
    except UsageError:
        return False


def names(home: StrPath, glob: str | None = None) -> list[str]:
    """Machine names under ``home`` matching ``glob`` (case-insensitive), sorted: the
    directories with a machine's name that hold a licence store (a directory someone else
    put there is not a machine)."""
    root = machines_root(home)
    pattern = glob.lower() if glob is not None else None  # "" matches no machine
    try:
        entries = [
            e.name
            for e in os.scandir(root)
            if e.is_dir()
            and (pattern is None or fnmatch.fnmatchcase(e.name.lower(), pattern))
            and _machine_named(e.name)
            and holds_store(Path(e.path))
        ]
    except FileNotFoundError:
        return []
    except OSError as exc:  # a file in its place, too
        raise machines_unreadable(root, exc) from exc
    return sorted(entries)


# What ospp puts in a machine's directory: its store (with SQLite's files beside it), its
# hardware profile, and their temporary files.
_OURS = (STORE_FILE, f".{STORE_FILE}.", HARDWARE_FILE, f".{HARDWARE_FILE}.")


def _foreign(directory: Path) -> list[str]:
    """What a machine's directory holds that ospp does not write there (``_OURS``)."""
    try:
        return sorted(e.name for e in os.scandir(directory) if not e.name.startswith(_OURS))
    except FileNotFoundError:
        return []


def require(home: StrPath, glob: str | None) -> list[str]:
    found = names(home, glob)
    if not found:
        raise UsageError(  # as for one computer name that names no machine
            f"no simulated machine matches {glob!r}" if glob else "there are no simulated machines",
            "Run 'ospp machines' for the list; create some with "
            "'ospp fleet create PREFIX COUNT --product ID'.",
            code=E_NO_MACHINE,
        )
    return found


# -- what a new machine holds -------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What each machine gets: products (each with its key, or None for the GVLK), and
    optionally a KMS host or lookup domain."""

    products: tuple[tuple[str, str | None], ...]
    kms_host: str | None = None
    kms_domain: str | None = None

    @classmethod
    def one(
        cls, product: str, kms_host: str | None, kms_domain: str | None, key: str | None
    ) -> Spec:
        return cls(((product, key),), kms_host, kms_domain)


def check_spec(spec: Spec) -> None:
    """Validate a spec before anything is created (raises the error the single verb would)."""
    from ospp.core.endpoint import parse_host, valid_host
    from ospp.protocol import keys

    if spec.kms_host:
        parse_host(spec.kms_host, 1688, "KMS host")
    if spec.kms_domain is not None and (
        not valid_host(spec.kms_domain.strip().rstrip(".")) or ":" in spec.kms_domain
    ):
        raise UsageError(f"--skms-domain value {spec.kms_domain!r} is not a DNS domain name")
    if spec.kms_domain:
        client.check_kms_domain(spec.kms_domain.strip().rstrip(".").lower(), spec.kms_domain)
    seen: set[str] = set()
    for product_id, key in spec.products:
        product = client.find_product(product_id)
        if product.id in seen:
            raise UsageError(
                f"{product.id} is given twice for one machine",
                "Give each product of a machine once, with the key it gets.",
            )
        seen.add(product.id)
        if key:
            parsed = keys.parse(key)
            if parsed.product is not product:
                raise UsageError(
                    f"the key *****-{parsed.last5} is for {parsed.product.id}, not {product.id}",
                    "Give a key of the product the machines get, or leave the key out.",
                )
            if parsed.channel is Channel.KMS_HOST:
                raise UsageError(
                    f"the key *****-{parsed.last5} is a KMS host key (CSVLK); simulated machines "
                    "are Office clients",
                    "Install it on the KMS host: ospp kms install-key KEY.",
                    code=E_SKU_NOT_FOUND,
                )


class Templates:
    """Template stores by spec, built once with the ordinary store code in a scratch home."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._scratch = Path(tempfile.mkdtemp(prefix="ospp-fleet-"))
        self._built: dict[Spec, bytes] = {}

    def get(self, spec: Spec) -> bytes:
        found = self._built.get(spec)
        if found is None:
            found = self._build(spec)
            if len(self._built) > 64:
                self._built.clear()
            self._built[spec] = found
        return found

    def _build(self, spec: Spec) -> bytes:
        name = f"t{len(self._built)}-{uuid.uuid4().hex[:8]}"
        store = MachineStore.open(self._scratch, name, self.clock, create=True)
        try:
            for product, key in spec.products:
                client.install_product(store, product)
                if key:
                    client.install_key(store, key)
            if spec.kms_host:
                client.set_kms_host(store, spec.kms_host)
            if spec.kms_domain:
                client.set_kms_domain(store, spec.kms_domain)
        finally:
            store.db.close()
        data = bytearray((Path(machine_dir(self._scratch, name)) / STORE_FILE).read_bytes())
        data[18:20] = b"\x01\x01"  # rollback-journal header, so sqlite3 can deserialize it
        return bytes(data)

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)


def stamped(template: bytes, created_at: str) -> bytes:
    """The template with a fresh CMID (and creation time), as WAL-mode file bytes."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.deserialize(template)
        mem.execute("UPDATE meta SET value=? WHERE name='cmid'", (str(uuid.uuid4()),))
        mem.execute("UPDATE meta SET value=? WHERE name='created_at'", (created_at,))
        mem.commit()
        data = bytearray(mem.serialize())
    finally:
        mem.close()
    data[18:20] = b"\x02\x02"  # WAL mode, as every ospp store is opened
    return bytes(data)


def place(home: StrPath, name: str, data: bytes) -> bool:
    """Write a new machine's store whole; False (nothing written) when it already exists."""
    directory = Path(machine_dir(home, name))
    target = directory / STORE_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if target.exists():
            return False
        return write_new(target, data, private=True)  # never replaces a store made meanwhile
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            f"the store of machine {name} cannot be written in {directory}: {exc.strerror or exc}",
            "Check that OSPP_HOME is writable.",
        ) from exc


def unplace(home: StrPath, name: str) -> None:
    """Undo :func:`place` (an import interrupted or refused): the store it wrote (with SQLite's
    files beside it) goes, and the directory with it when nothing else is left in it; what
    someone else put there (notes, a hardware profile) stays, as ``fleet remove`` leaves it."""
    directory = Path(machine_dir(home, name))
    written = {STORE_FILE, *(f"{STORE_FILE}-{side}" for side in ("wal", "shm", "journal"))}
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name in written or (name.startswith(f".{STORE_FILE}.") and name.endswith(".new")):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    with contextlib.suppress(OSError):  # not empty: it holds what the import did not bring
        directory.rmdir()


@dataclass(frozen=True)
class Created:
    machine: str
    outcome: str  # "created" or "exists"


class Names:
    """PREFIX1..PREFIXn, zero-padded to the width of n: computed, not stored."""

    def __init__(self, prefix: str, count: int) -> None:
        self.count = count
        self.width = len(str(count))
        # every name has the same length and characters of the same kinds: checking the last
        # checks them all (machine_name strips and lowers the prefix)
        self.base = machine_name(f"{prefix}{count}")[: -self.width]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:
        if not -self.count <= index < self.count:
            raise IndexError(index)
        return f"{self.base}{index % self.count + 1:0{self.width}d}"

    def __iter__(self) -> Iterator[str]:
        return (f"{self.base}{n:0{self.width}d}" for n in range(1, self.count + 1))

    def __contains__(self, name: object) -> bool:
        digits = name[len(self.base) :] if isinstance(name, str) else ""
        return (
            isinstance(name, str)
            and name.startswith(self.base)
            and len(digits) == self.width
            and digits.isascii()
            and digits.isdigit()
            and 1 <= int(digits) <= self.count
        )


def create_names(prefix: str, count: int) -> Names:
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(
            f"COUNT must be between 1 and {MAX_COUNT}, not {count}", "Create a fleet in parts."
        )
    return Names(prefix, count)


def create(
    home: StrPath, names: Iterable[str], spec: Spec, clock: Clock, templates: Templates
) -> Generator[Created, None, None]:
    """Create each named machine; one that already exists is reported, never overwritten."""
    created_at = iso(clock.now())
    data = templates.get(spec)

    def one(name: str) -> Iterator[Created]:
        ok = place(home, name, stamped(data, created_at))
        yield Created(name, "created" if ok else "exists")

    yield from parallel(names, one)


# -- keys and removal --------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    machine: str
    outcome: str  # "installed", "removed", "kept" (this machine) or "failed"
    error: OsppError | None = None


def removed(home: StrPath, name: str) -> bool:
    """Whether machine ``name`` is gone: removed ('fleet remove') while a pass had it open,
    whose failures then (a store that cannot be written any more) are not the machine's."""
    return not holds_store(machine_dir(home, name))


def install_key(
    home: StrPath, glob: str, key: str, environ: Mapping[str, str], clock: Clock
) -> Iterator[Done]:
    """Install ``key`` on every machine matching ``glob`` (validated once, up front)."""
    from ospp.protocol import keys

    parsed = keys.parse(key)

    def one(name: str) -> Iterator[Done]:
        try:
            store = MachineStore.open(home, name, clock)
        except NoMachine:
            return  # a directory that holds no machine, or one removed meanwhile
        except OsppError as exc:
            if not removed(home, name):  # else removed meanwhile: passed over, as above
                yield Done(name, "failed", exc)
            return
        try:
            client.check_key_fits(store, parsed)
            with store.write() as conn:
                store.install_key(conn, parsed)
                store.bump(conn)
            yield Done(name, "installed")
        except OsppError as exc:
            if not removed(home, name):
                yield Done(name, "failed", exc)
        finally:
            store.db.close()

    yield from parallel(require(home, glob), one)


def _this_machine(name: str) -> bool:
    """Whether a listed machine is this one (on Windows its directory may be 'LocalHost')."""
    return name.lower() == LOCAL_MACHINE


def removable(home: StrPath, glob: str) -> list[str]:
    """The machines ``fleet remove GLOB`` is about: :func:`require`'s, refused when the only
    one is this machine, which :func:`remove` keeps."""
    found = require(home, glob)
    if [_this_machine(name) for name in found] == [True]:
        raise UsageError(
            f"{glob!r} matches only {LOCAL_MACHINE}, this machine, which every home has: "
            "fleet remove removes the other, simulated machines",
            "To take its products' keys off it: ospp /unpkey:XXXXX (the last 5 characters).",
        )
    return found


def remove(home: StrPath, glob: str) -> Iterator[Done]:
    """Delete every machine matching ``glob`` except this one (``localhost``): a glob such
    as ``*`` reaches it too, and it is kept (outcome ``kept``), never emptied."""
    for name in require(home, glob):
        if _this_machine(name):
            yield Done(name, "kept")
            continue
        directory = Path(machine_dir(home, name))
        try:
            foreign = _foreign(directory)
            if foreign:
                yield Done(
                    name,
                    "failed",
                    StoreError(
                        E_ACCESS_DENIED,
                        f"{name}: its directory {directory} also holds what ospp did not put "
                        f"there ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})"
                        "; it was left as it is",
                    ),
                )
                continue
            with _ctrl_c_after():
                removed = _remove_dir(directory)
        except OSError as exc:
            yield Done(name, "failed", StoreError(E_ACCESS_DENIED, f"{name}: {exc}"))
        else:
            if removed:
                yield Done(name, "removed")


@contextlib.contextmanager
def _ctrl_c_after() -> Iterator[None]:
    """Ctrl+C while a machine's directory is being deleted takes effect once it is: a
    KeyboardInterrupt inside the deletion would leave half a machine, or surface as the
    failure of a file operation it cut short (a descriptor closed under it)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[object] = []
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed and callable(previous):
            previous(signal.SIGINT, None)  # Python's own raises KeyboardInterrupt
        elif pressed and previous != signal.SIG_IGN:
            raise KeyboardInterrupt


def _remove_dir(directory: Path) -> bool:
    """Delete a machine's directory; False when someone else had removed it already.

    A command that opened the store just before may still add or drop its ``-wal`` or
    ``-shm`` file while the directory is emptied ("directory not empty", or a file gone
    between listing and deleting). Once the store file is gone no command opens it again (it
    is never re-created), so a few more passes finish.
    """
    import errno
    import secrets
    import time

    if not os.path.lexists(directory):
        return False
    # Out of the machines in one step first: a command opening the machine meanwhile finds
    # none (as after the removal), rather than a store half deleted, and one that has it open
    # can tell that it was removed (fleetact.removed).
    doomed = directory.with_name(f".removing-{directory.name}-{secrets.token_hex(4)}")
    try:
        os.rename(directory, doomed)
    except FileNotFoundError:
        return False  # removed by someone else meanwhile
    except OSError:
        doomed = directory  # it cannot be moved (Windows, a file open in it): removed in place
    for attempt in range(20):
        try:
            shutil.rmtree(doomed)
        except OSError as exc:
            if not os.path.lexists(doomed):
                return True
            settling = isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOTEMPTY
            if not settling or attempt == 19:
                _put_back(doomed, directory)
                raise
            time.sleep(0.01 * (attempt + 1))
        else:
            return True
    raise AssertionError("unreachable")


def _put_back(doomed: Path, directory: Path) -> None:
    """What is left of a machine whose removal failed part way (a file that may not be
    deleted) goes back under its name: still listed, and removed by the next 'fleet remove'
    once the cause is gone, instead of hidden."""
    if doomed != directory and not os.path.lexists(directory):
        with contextlib.suppress(OSError):
            os.rename(doomed, directory)
