"""Reading and writing ospp's files: state files read without waiting on a FIFO, files a user
names, files replaced all at once, files made once, and the locks that make writers take turns.

Every function takes a ``str`` or any ``os.PathLike`` and works with ``os`` and ``os.path``
alone (see :mod:`ospp.core.paths` for why not pathlib).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from ospp.core.errors import E_ACCESS_DENIED, E_INVALID_DATA, StoreError, UsageError
from ospp.core.paths import StrPath, parent

USER_FILE_LIMIT = 1024 * 1024  # trust anchors, key files and batch files are all far smaller


def read_state_file(path: StrPath, limit: int = USER_FILE_LIMIT) -> bytes:
    """The bytes of the state file ``path`` (a seal key, a hardware profile, a trust anchor),
    at most ``limit`` of them. Anything but a regular file is an OSError saying so, found
    without blocking: a FIFO in its place would never end, a device never stop. A symbolic
    link to a regular file is read as the file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", os.fspath(path))
    return data


def read_user_file(path: StrPath, what: str, limit: int = USER_FILE_LIMIT) -> str:
    """The text of a file a user named (``-`` is standard input), at most ``limit`` bytes.

    A device that never ends (``/dev/zero``), a directory, a file too large or not UTF-8 is
    refused with a UsageError naming it, instead of hanging or failing later.
    """
    try:
        if os.fspath(path) == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except IsADirectoryError:
        raise UsageError(f"the {what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise UsageError(
            f"the {what} {path} is larger than {limit // 1024} KiB",
            f"Give the {what} itself; ospp reads at most {limit} bytes of it.",
        )
    try:
        # A byte order mark, as Notepad, Excel and PowerShell 5's -Encoding utf8 write one,
        # is not part of the text.
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise not_utf8(f"the {what} {path}", path, data[:2], exc) from exc


def not_utf8(named: str, path: StrPath, head: bytes, exc: UnicodeDecodeError) -> UsageError:
    """The error for a file a user gave that is not UTF-8 (``named`` says which, ``head`` is
    its first two bytes): a UTF-16 one, as '>' writes it in Windows PowerShell 5, is named as
    such, with how to convert it."""
    if head not in (b"\xff\xfe", b"\xfe\xff"):
        return UsageError(f"{named} is not UTF-8 text: {exc.reason}")
    how = "Save it as UTF-8"
    if os.fspath(path) != "-":
        quoted = "'" + os.fspath(path).replace("'", "''") + "'"  # PowerShell's single quotes
        how += (
            f", e.g. in PowerShell: Get-Content -LiteralPath {quoted} | Set-Content -Encoding "
            "utf8 NEW"
        )
    return UsageError(
        f"{named} is UTF-16 text (it starts with a UTF-16 byte order mark); ospp reads UTF-8",
        f"{how}.",
    )


def write_atomic(path: StrPath, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` all at once: readers see the old file or the new one.

    See :func:`atomic_writer`, which this uses.
    """
    with atomic_writer(path, private=private) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_writer(
    path: StrPath, *, private: bool = False, newline: str | None = None
) -> Iterator[TextIO]:
    """A text file that replaces ``path`` all at once when the block ends without an error.

    The text goes to a new temporary file in the same directory (a unique name, created
    exclusively, so a planted link is never followed and concurrent writers never share it),
    is flushed to disk, and is renamed over the target (``os.replace`` is atomic on POSIX and
    Windows). ``private`` makes it owner-only. A symbolic link in place of ``path`` is refused
    with a StoreError; other failures raise OSError, which callers wrap in the error their
    context calls for. On any failure the target is left as it was.
    """
    import tempfile

    base = os.path.basename(path)
    if not base or os.path.isdir(path):
        raise UsageError(f"{os.fspath(path)!r} is not a file name", "Name the file to write.")
    if os.path.islink(path):
        raise _link_refused(path)
    _refuse_special(path)
    fd, name = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            if not private:
                os.chmod(name, 0o644)  # mkstemp makes it owner-only
            yield f
            f.flush()
            os.fsync(f.fileno())
        _replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    _sync_directory(parent(path))


def _refuse_special(path: StrPath) -> None:
    """A device, FIFO or socket in place of a file to replace is refused: the new file would
    be renamed over it (``ospp fleet export /dev/null`` run by root would put a regular file
    in place of /dev/null)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # not there (yet): created in its place
    if not stat.S_ISREG(mode):
        raise UsageError(
            f"{path} is not a regular file: ospp writes a new file and renames it into place, "
            "which would replace it",
            "Name a regular file (or a new one) to write.",
        )


def _link_refused(path: StrPath) -> StoreError:
    return StoreError(
        E_ACCESS_DENIED,
        f"{path} is a symbolic link (to {os.readlink(path)}); ospp does not follow links "
        "in place of its state files",
        "Replace the link with the file itself. Nothing was changed.",
    )


def write_new(path: StrPath, data: bytes, *, private: bool = False) -> bool:
    """Create ``path`` holding ``data`` unless it exists; True when this call created it.

    For a file made once, on first use (a seal key, a hardware profile, a signing key, a new
    machine's store): the bytes go to a new temporary file in the same directory, flushed to
    disk, which is then linked to ``path`` (POSIX) or renamed to it (Windows, where a rename
    never replaces a file). Both refuse a target that exists, so the file appears whole or not
    at all, and of several processes creating it at once exactly one succeeds: every other
    one gets False and reads the file that won, never replacing it. The temporary file is
    binary (no newline translation on Windows) and owner-only unless not ``private``.
    A symbolic link in place of ``path`` (even a dangling one) is refused with a StoreError;
    other failures raise OSError, which callers wrap in the error their context calls for.
    """
    import tempfile

    if os.path.islink(path):
        raise _link_refused(path)
    prefix = f".{os.path.basename(path)}."
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".new", dir=parent(path))
    moved = False  # renamed into place: no temporary file is left to remove
    try:
        with os.fdopen(fd, "wb") as f:
            if not private:
                os.chmod(name, 0o644)  # mkstemp makes it owner-only
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            if os.name == "nt":
                os.rename(name, path)
                moved = True
            elif not _link(name, path):
                return _create_exclusive(path, data, private)
        except FileExistsError:
            return False
    finally:
        if not moved:
            with contextlib.suppress(OSError):
                os.unlink(name)
    _sync_directory(parent(path))
    return True


def _link(source: str, target: StrPath) -> bool:
    """``os.link``; False where the file system has no hard links (FAT, exFAT, some network
    shares mounted on Linux), which refuse with EPERM or ENOTSUP."""
    import errno

    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise
    return True


def _create_exclusive(path: StrPath, data: bytes, private: bool) -> bool:
    """:func:`write_new` without hard links: ``path`` is created exclusively (one process
    wins, as with a link) and written in place, so a reader at that very moment may find it
    still empty."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600 if private else 0o644)
    except FileExistsError:
        return False
    write_fd(fd, data, path)
    _sync_directory(parent(path))
    return True


def write_fd(fd: int, data: bytes, path: StrPath) -> None:
    """Write ``data`` to ``fd``, the file just created at ``path``, flush it to disk and
    close it; if that fails the file is removed, never left half-written in its place."""
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _replace(source: str, target: StrPath) -> None:
    """``os.replace``, which Windows refuses while another process has the target open (a
    command reading the lab clock, say): there it is tried again for about two seconds."""
    for attempt in range(10):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 9:
                raise
            import time

            time.sleep(0.04 * (attempt + 1))


def _sync_directory(directory: StrPath) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows has no directory handles)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


# How long a lock is waited for before the command gives up (msvcrt.locking's own 10 s).
LOCK_WAIT = 10.0


class LockHeld(StoreError):
    """The lock is held by another process (:func:`locked` with ``wait=0``)."""


@contextlib.contextmanager
def locked(path: StrPath, wait: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if need be) for the block.

    For a read-modify-write of a small state file that ``os.replace`` swaps whole: the lock
    lives in its own file, which is never replaced, so every writer waits on the same one.
    ``flock`` on POSIX, ``msvcrt.locking`` on Windows, each waited for about ``wait`` seconds
    (``LOCK_WAIT``; with 0, tried once: :class:`LockHeld` when another process holds it);
    the system drops the lock when the process ends, so a killed writer never leaves it
    held, and anyone may open the lock file (a lab clock shared by several users). A lock
    that cannot be taken, or a symbolic link in place of the lock file, is a StoreError
    naming the file.
    """
    fd = _open_lock(path)
    try:
        try:
            _lock(fd, LOCK_WAIT if wait is None else wait)
        except BlockingIOError as exc:
            raise LockHeld(
                E_ACCESS_DENIED,
                f"the lock file {path} is held by another process",
                "Another ospp command holds it; try again.",
            ) from exc
        except OSError as exc:
            raise StoreError(
                E_ACCESS_DENIED,
                f"the lock file {path} cannot be locked: {exc.strerror or exc}",
                "Another ospp command holds it; try again.",
            ) from exc
        try:
            yield
        finally:
            if sys.platform == "win32":
                import msvcrt

                with contextlib.suppress(OSError):
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)


def _open_lock(path: StrPath) -> int:
    """The lock file ``path`` opened (made if need be): a regular file, not a link."""
    # Read-only where flock needs no more: a lock file another user made (a shared lab clock)
    # can still be opened. Anyone may read it; it holds nothing.
    access = os.O_RDWR if sys.platform == "win32" else os.O_RDONLY
    flags = access | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO in its place would block the open
    try:
        if os.path.islink(path):  # O_NOFOLLOW refuses it too, where the system has it
            raise _link_refused(path)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise StoreError(
            E_ACCESS_DENIED,
            f"the lock file {path} cannot be opened: {exc.strerror or exc}",
            f"Check that {parent(path)} is writable.",
        ) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(
            E_INVALID_DATA,
            f"the lock file {path} is not a regular file; ospp locks only a file it made there",
            "It was left as it is. Remove it; ospp makes it again.",
        )
    return fd


def _lock(fd: int, wait: float) -> None:
    """Lock the open file ``fd``, waiting about ``wait`` seconds: BlockingIOError when another
    process holds it then, OSError when it cannot be locked at all."""
    if sys.platform == "win32":
        import msvcrt

        if wait <= 0:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except PermissionError as exc:  # what Windows says for a byte another one holds
                raise BlockingIOError(errno.EWOULDBLOCK, "held by another process") from exc
        else:
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # tries for 10 seconds, then OSError
        return
    import fcntl

    # waited for at most ``wait``: a writer that hangs (suspended, say) makes the others fail
    # with a message, not hang with it
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if wait <= 0:
                raise
            if time.monotonic() >= deadline:
                raise TimeoutError(errno.ETIMEDOUT, f"still held after {wait:g} s") from None
            time.sleep(0.01)
