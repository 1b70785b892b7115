"""Windows portability, checked where the tests run.

Only Linux runs the suite, so what Windows would do differently is tested through the code
that decides on ``os.name`` (patched here for one module at a time: pathlib itself reads
``os.name``), and through pure functions.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

import pytest

import ospp
import ospp.core.files
from ospp.core.db import absolute_path, sqlite_uri
from ospp.core.errors import UsageError
from ospp.core.files import write_atomic, write_new
from ospp.core.paths import machine_name, parent, pathlib_form, windows_name_problem
from ospp.machine.fleet import create_names
from ospp.machine.fleetcsv import read_csv
from tests.conftest import PRODUCT, Ospp


@pytest.mark.parametrize(
    "name",
    [
        *("con", "prn", "aux", "nul", "com1", "com9", "lpt0", "lpt3"),
        *("nul.corp.example", "con.1", "pc.", "pc1.example."),
    ],
)
def test_names_windows_cannot_hold_are_found(name: str) -> None:
    assert windows_name_problem(name) is not None


@pytest.mark.parametrize(
    "name", ["console", "com10", "lpt", "nulls", "pc1", "aux-1", "pc.corp.example", "my.con"]
)
def test_ordinary_names_pass_on_windows(name: str) -> None:
    assert windows_name_problem(name) is None


class WindowsOs:
    """``os`` as one module sees it on Windows: ``name`` is "nt", the rest is the real one."""

    name = "nt"

    def __getattr__(self, attribute: str) -> object:
        return getattr(os, attribute)


def on_windows(monkeypatch: pytest.MonkeyPatch, *modules: object) -> None:
    for module in modules:
        monkeypatch.setattr(module, "os", WindowsOs())


@pytest.mark.parametrize("raw", ["CON", "Com1", " nul ", "LPT9.lab", "pc."])
def test_a_name_windows_cannot_hold_is_refused_on_every_system(raw: str) -> None:
    # each machine is a directory: a fleet rehearsed here must be one Windows can hold too
    with pytest.raises(UsageError) as caught:
        machine_name(raw)
    assert "Windows" in caught.value.message
    assert int(caught.value.exit_status) == 2


def test_ordinary_names_and_fleets_are_unchanged() -> None:
    assert machine_name("PC1") == "pc1" and machine_name(None) == "localhost"
    assert list(create_names("ws", 3)) == ["ws1", "ws2", "ws3"]
    with pytest.raises(UsageError, match="COM"):
        create_names("com", 9)  # com1..com9: every one a Windows device


def test_an_import_file_naming_a_device_says_which_line(tmp_path: Path) -> None:
    csv = tmp_path / "fleet.csv"
    csv.write_text("machine,product,key,kms_host\npc1,ProPlus2021,,\nAUX,ProPlus2021,,\n")
    with pytest.raises(UsageError, match="line 3: computer name 'AUX' is not valid"):
        list(read_csv(csv))


# -- calls that exist only on POSIX (or only on Windows) have a fallback -----------------------

ONE_SYSTEM_MODULES = {
    *("fcntl", "termios", "tty", "pty", "resource", "pwd", "grp", "posix", "syslog", "crypt"),
    *("curses", "readline", "msvcrt", "winreg", "_winapi", "winsound", "nt"),
}
ONE_SYSTEM_ATTRIBUTES = {
    "os": {
        *("fchmod", "fchown", "chown", "lchown", "lchmod", "getuid", "geteuid", "getgid"),
        *("getegid", "getgroups", "setuid", "setgid", "getpgid", "getpgrp", "setsid", "killpg"),
        *("getloadavg", "sync", "fork", "forkpty", "mkfifo", "mknod", "nice", "statvfs"),
        *("fstatvfs", "O_NOFOLLOW", "O_DIRECTORY", "O_NONBLOCK", "O_CLOEXEC", "O_SYNC"),
        *("O_DSYNC", "O_BINARY", "WNOHANG", "wait3", "wait4", "uname", "sysconf", "pipe2"),
        *("sched_getaffinity", "openpty", "ttyname", "setpriority", "getpriority", "sendfile"),
        *("startfile", "getsid", "posix_spawn", "getresuid"),
    },
    "signal": {
        *("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGALRM", "SIGCHLD", "SIGQUIT", "SIGPIPE"),
        *("SIGCONT", "SIGSTOP", "SIGTSTP", "SIGWINCH", "alarm", "setitimer", "pause"),
        *("pthread_kill", "pthread_sigmask", "sigwait", "CTRL_C_EVENT", "CTRL_BREAK_EVENT"),
    },
    "socket": {"AF_UNIX", "SO_REUSEPORT", "SOCK_CLOEXEC", "SOCK_NONBLOCK", "MSG_NOSIGNAL"},
    "select": {"epoll", "poll", "kqueue", "devpoll"},
    "shutil": {"chown"},
    "time": {"tzset"},
}
# Event-loop methods Windows' default (proactor) loop does not implement.
ONE_SYSTEM_METHODS = {"add_signal_handler", "remove_signal_handler", "add_reader", "add_writer"}
FALLBACK_ERRORS = {"ImportError", "ModuleNotFoundError", "AttributeError", "NotImplementedError"}
PLATFORM_TESTS = ("os.name", "sys.platform", "hasattr(")
# Guarded in a way a syntax check cannot see, each with the reason.
KNOWN_SAFE = {
    ("ospp/core/notify.py", "socket.AF_UNIX"): "send() runs only once __init__ found AF_UNIX",
}


def _one_system_uses(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names if a.name in ONE_SYSTEM_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module in ONE_SYSTEM_MODULES:
            found.append((node, node.module))
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if node.attr in ONE_SYSTEM_ATTRIBUTES.get(owner, ()):
                found.append((node, f"{owner}.{node.attr}"))
            if node.attr in ONE_SYSTEM_METHODS:
                found.append((node, f".{node.attr}"))
    return found


def _is_platform_test(node: ast.AST) -> bool:
    return any(test in ast.unparse(node) for test in PLATFORM_TESTS)


def _catches(names: ast.AST | None) -> bool:
    return names is not None and bool(
        FALLBACK_ERRORS & {n.id for n in ast.walk(names) if isinstance(n, ast.Name)}
    )


def _suppresses(item: ast.withitem) -> bool:
    call = item.context_expr
    return (
        isinstance(call, ast.Call)
        and ast.unparse(call.func).endswith("suppress")
        and any(_catches(a) for a in call.args)
    )


def _returns_early(function: ast.FunctionDef | ast.AsyncFunctionDef, line: int) -> bool:
    """Whether ``function`` returns (or raises) on the other system before ``line``."""
    return any(
        isinstance(s, ast.If)
        and s.lineno < line
        and _is_platform_test(s.test)
        and any(isinstance(b, ast.Return | ast.Raise) for b in s.body)
        for s in function.body
    )


def _guards(at: ast.AST, child: ast.AST, line: int) -> bool:
    """Whether ``at``, an ancestor (through ``child``) of a use on ``line``, guards it."""
    if isinstance(at, ast.If | ast.IfExp):
        return _is_platform_test(at.test)
    if isinstance(at, ast.BoolOp) and child in at.values:  # sys.platform == ... or os.geteuid()
        return any(_is_platform_test(v) for v in at.values[: at.values.index(child)])
    if isinstance(at, ast.Try):
        return child in at.body and any(_catches(h.type) for h in at.handlers)
    if isinstance(at, ast.With | ast.AsyncWith):
        return child in at.body and any(_suppresses(item) for item in at.items)
    if isinstance(at, ast.FunctionDef | ast.AsyncFunctionDef):
        return _returns_early(at, line)
    return False


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    line = getattr(node, "lineno", 0)
    child, at = node, parents.get(node)
    while at is not None:
        if _guards(at, child, line):
            return True
        child, at = at, parents.get(at)
    return False


def test_every_call_one_system_lacks_has_a_fallback() -> None:
    """A POSIX-only (or Windows-only) module, constant or call is used only behind a test of
    the platform, a hasattr, or a handler for the ImportError, AttributeError or
    NotImplementedError the other system raises: never an unguarded crash there."""
    root = Path(ospp.__file__).parent
    unguarded = []
    seen_safe = set()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        for node, what in _one_system_uses(tree):
            if (relative, what) in KNOWN_SAFE:
                seen_safe.add((relative, what))
            elif not _guarded(node, parents):
                unguarded.append(f"{relative}:{getattr(node, 'lineno', '?')}: {what}")
    assert not unguarded, "no fallback on the other system:\n" + "\n".join(unguarded)
    assert seen_safe == set(KNOWN_SAFE), "KNOWN_SAFE lists a use that is gone"


@pytest.mark.parametrize(
    ("source", "guarded"),
    [
        ("import fcntl", False),
        ("os.fchmod(fd, 0o600)", False),
        ("loop.add_signal_handler(signal.SIGTERM, stop)", False),
        ("if os.name == 'posix':\n    os.fchmod(fd, 0o600)", True),
        ("try:\n    import resource\nexcept ImportError:\n    pass", True),
        ("try:\n    import resource\nexcept OSError:\n    pass", False),
        ("with contextlib.suppress(AttributeError):\n    x = signal.SIGHUP", True),
        ("with contextlib.suppress(RuntimeError):\n    x = signal.SIGHUP", False),
        ("def f():\n    if os.name != 'posix':\n        return\n    os.sync()", True),
        ("def f():\n    os.sync()\n    if os.name != 'posix':\n        return", False),
        ("skip = sys.platform == 'win32' or os.geteuid() == 0", True),
        ("skip = os.geteuid() == 0 or sys.platform == 'win32'", False),
    ],
)
def test_the_fallback_check_tells_guarded_from_unguarded(source: str, guarded: bool) -> None:
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    uses = _one_system_uses(tree)
    assert uses, source
    assert all(_guarded(node, parents) == guarded for node, _ in uses), source


def test_files_written_through_descriptors_are_opened_binary() -> None:
    """``os.open`` without ``O_BINARY`` gives a text-mode descriptor on Windows, where
    ``os.write`` turns every LF byte into CR LF: a module writing with ``os.write`` opens its
    descriptors with ``getattr(os, "O_BINARY", 0)`` (or gets them from ``tempfile``)."""
    root = Path(ospp.__file__).parent
    writers = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        if "os.write" in calls:
            writers.append(path.name)
            assert "O_BINARY" in path.read_text(encoding="utf-8"), path
    assert writers  # the request log of the phone centre, at least


class BusyTarget(WindowsOs):
    """Windows refusing to replace a file another process has open, ``busy`` times."""

    def __init__(self, busy: int) -> None:
        self.busy = busy

    def replace(self, source: str, target: object) -> None:
        if self.busy:
            self.busy -= 1
            raise PermissionError(13, "Access is denied", str(target))
        os.replace(source, target)  # type: ignore[arg-type]


def test_on_windows_a_state_file_open_elsewhere_is_replaced_once_it_is_free(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On Windows a reader holding clock.json open makes os.replace fail for a moment;
    the write waits for it instead of failing (POSIX never refuses)."""
    target = tmp_path / "clock.json"
    target.write_text("old")
    busy = BusyTarget(3)
    monkeypatch.setattr(ospp.core.files, "os", busy)
    write_atomic(target, "new")
    assert target.read_text() == "new" and busy.busy == 0
    assert [p.name for p in tmp_path.iterdir()] == ["clock.json"]


def test_on_windows_a_state_file_that_stays_busy_is_an_error_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "clock.json"
    target.write_text("old")
    monkeypatch.setattr(ospp.core.files, "os", BusyTarget(1000))
    with pytest.raises(PermissionError):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["clock.json"]


# -- SQLite URIs for every kind of path ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        # SQLite takes no host: a UNC share keeps its two slashes in the path instead
        (
            PureWindowsPath(r"\\server\share\ospp\licenses.db"),
            "file:////server/share/ospp/licenses.db",
        ),
        (PureWindowsPath(r"C:\Users\A B\ospp\kms.db"), "file:///C:/Users/A%20B/ospp/kms.db"),
        (PurePosixPath("/home/a b/#1?/licenses.db"), "file:///home/a%20b/%231%3F/licenses.db"),
        (PurePosixPath("//srv/ospp/licenses.db"), "file:////srv/ospp/licenses.db"),
    ],
)
def test_store_paths_become_uris_sqlite_accepts(path: PurePath, uri: str) -> None:
    assert sqlite_uri(path) == uri
    if isinstance(path, PurePosixPath) and os.name != "nt":
        assert sqlite_uri(str(path)) == uri  # a store's path as ospp holds it: a str


@pytest.mark.skipif(os.name == "nt", reason="a str is a POSIX path only on POSIX")
@pytest.mark.parametrize(
    "path",
    [
        "/home/a b/#1?/licenses.db",
        "/tmp/%41 ~_.-/kms.db",
        "/tmp/r\u00e4ksm\u00f6rg\u00e5s/\u2603/licenses.db",
        "/tmp/\udcff\udc80/licenses.db",  # bytes that are not UTF-8, as os.fsdecode gives them
        "/tmp/" + "".join(chr(c) for c in range(1, 128) if chr(c) != "/") + "/x.db",
        "//srv/ospp/licenses.db",
        "/",
    ],
)
def test_a_str_path_becomes_the_uri_pathlib_would_give(path: str) -> None:
    """Opening a store builds its URI without pathlib (start-up): the same URI, every byte."""
    assert sqlite_uri(path) == PurePosixPath(path).as_uri()


def test_a_relative_str_path_has_no_uri() -> None:
    with pytest.raises(ValueError, match="relative"):
        sqlite_uri("licenses.db")


# Paths as ospp may be given them: with doubled and trailing separators, '.' and '..' parts,
# POSIX's two leading slashes, and on Windows drives, shares, device paths and '/'.
_POSIX_PATHS = [
    *("a", "a/b", "a/b/", "a//b", "/", "/a", "//a/b", "///a", "//", "///", "////a//", "//a"),
    *("./a", "../a/b", "a/b/..", "a/.", "/a/.", "a/b/.", "x//./y", ".", "c.json/.", "a\\b"),
]
_WINDOWS_PATHS = [
    *("C:\\", "C:\\x", "C:x", "C:", "c:/Users/A B/ospp", "C:/a//b/./c", "C:\\x\\..\\y"),
    *("\\\\srv\\share", "\\\\srv\\share\\", "\\\\srv\\share\\x\\y", "//srv/share/x"),
    *("\\\\?\\C:\\x", "\\\\.\\pipe\\x", "\\x", "/x/y", "a/b\\c", "..\\a", "//a//b"),
    *("\\\\?\\UNC\\srv\\share", "\\\\?\\UNC\\srv\\share\\clock.json", "\\\\?\\C:", "//?/"),
    "\\\\?\\Volume{abc}\\lab",
]


# Python 3.12 changed how pathlib splits odd Windows paths (it asks ntpath.splitroot); ospp
# names paths as 3.11's pathlib did, which is what these compare with.
_PATHLIB_311 = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="compared with Python 3.11's pathlib"
)


@_PATHLIB_311
def test_generated_paths_are_named_and_parented_as_pathlib_does() -> None:
    """Ten thousand paths made of the pieces that make pathlib's parsing differ between
    systems: separators of both kinds, dots, drives, shares and extended-length prefixes."""
    import ntpath
    import posixpath
    import random

    pieces = ["/", "\\", ".", "..", "a", ":", "C:", "?", " ", "\u00e9", "UNC", "\\\\?\\", "//"]
    pieces += ["\\\\.\\", "srv"]
    rng = random.Random(1688)
    for _ in range(10_000):
        path = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        for flavour, pure in ((posixpath, PurePosixPath), (ntpath, PureWindowsPath)):
            expected = (str(pure(path)), str(pure(path).parent))
            assert (pathlib_form(path, flavour), parent(path, flavour)) == expected, path


@pytest.mark.parametrize("path", _POSIX_PATHS)
def test_paths_are_named_and_parented_as_pathlib_does_on_posix(path: str) -> None:
    import posixpath

    assert pathlib_form(path, posixpath) == str(PurePosixPath(path))
    assert parent(path, posixpath) == str(PurePosixPath(path).parent)


@_PATHLIB_311
@pytest.mark.parametrize("path", _WINDOWS_PATHS + _POSIX_PATHS)
def test_paths_are_named_and_parented_as_pathlib_does_on_windows(path: str) -> None:
    import ntpath

    assert pathlib_form(path, ntpath) == str(PureWindowsPath(path))
    assert parent(path, ntpath) == str(PureWindowsPath(path).parent)


def test_a_windows_path_without_a_drive_gets_one_before_it_becomes_a_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``\\lab`` is absolute to ``os.path.isabs`` on Windows but has no drive, and no file URI
    holds it: the store's path is completed as the system completes it (GetFullPathName, here
    emulated from a working directory on D:), not given to SQLite as it is."""
    import ntpath
    from types import SimpleNamespace

    import ospp.core.db

    def full_path(path: str) -> str:
        return ntpath.normpath(ntpath.join("D:\\work", path))

    fake = SimpleNamespace(name="nt", path=SimpleNamespace(abspath=full_path), fsencode=os.fsencode)
    monkeypatch.setattr(ospp.core.db, "os", fake)
    uri = sqlite_uri(absolute_path("\\ospp-lab\\machines\\ws1\\licenses.db"))
    assert uri == "file:///D:/ospp-lab/machines/ws1/licenses.db"


def test_a_home_whose_path_starts_with_two_slashes_gets_the_quick_fleet_read(
    tmp_path: Path,
) -> None:
    """POSIX keeps a leading '//': the quick read of a quiescent store must not take the
    first directory for a URI host ('invalid uri authority') and fall back to the slow read."""
    from ospp.core.clock import FixedClock, parse_time
    from ospp.machine import client
    from ospp.machine.fleetview import _quick

    home = Path("/" + str(tmp_path))
    assert str(home).startswith("//")
    store = client.open_for_install("pc1", "ProPlus2021", {"OSPP_HOME": str(home)})
    client.install_product(store, "ProPlus2021")
    store.db.close()
    snapshot = _quick(home, "pc1", FixedClock(parse_time("2027-01-01")))
    assert snapshot is not None
    assert {lic.sku.product.id for lic in snapshot.licenses} == {"ProPlus2021"}


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file system refuses hard links, as FAT, exFAT and some network shares mounted on
    Linux do (EPERM)."""
    import errno

    def refuse(source: object, target: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", str(target))

    monkeypatch.setattr(os, "link", refuse)


def test_a_home_on_a_file_system_without_hard_links_works(
    ospp: Ospp, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_hard_links(monkeypatch)
    ospp.install(PRODUCT, "pc01")
    first = ospp("hardware", "show", "pc01", "--json")
    assert first.code == 0, first.out
    assert ospp("hardware", "show", "pc01", "--json").data() == first.data()
    profile = Path(ospp.env["OSPP_HOME"]) / "machines" / "pc01" / "hardware.json"
    assert profile.is_file() and not list(profile.parent.glob(".hardware.json.*"))


def test_without_hard_links_a_file_made_once_is_still_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_hard_links(monkeypatch)
    target = tmp_path / "seal.key"
    assert write_new(target, b"first", private=True) is True
    assert write_new(target, b"second", private=True) is False
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seal.key"]
