"""Windows portability, checked where the tests run.

Only Linux runs the suite, so what Windows would do differently is tested through the code
that decides on ``os.name`` (patched here for one module at a time: pathlib itself reads
``os.name``), and through pure functions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ospp.core.paths
from ospp.core.errors import UsageError
from ospp.core.paths import machine_name, windows_name_problem
from ospp.machine.fleet import create_names, read_csv


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


@pytest.fixture
def windows_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    on_windows(monkeypatch, ospp.core.paths)


@pytest.mark.usefixtures("windows_paths")
@pytest.mark.parametrize("raw", ["CON", "Com1", " nul ", "LPT9.lab", "pc."])
def test_on_windows_a_reserved_machine_name_is_a_usage_error(raw: str) -> None:
    with pytest.raises(UsageError) as caught:
        machine_name(raw)
    assert "cannot be used on Windows" in caught.value.message
    assert int(caught.value.exit_status) == 2


@pytest.mark.usefixtures("windows_paths")
def test_on_windows_ordinary_names_and_fleets_are_unchanged() -> None:
    assert machine_name("PC1") == "pc1" and machine_name(None) == "localhost"
    assert list(create_names("ws", 3)) == ["ws1", "ws2", "ws3"]
    with pytest.raises(UsageError, match="COM"):
        create_names("com", 9)  # com1..com9: every one a Windows device


@pytest.mark.usefixtures("windows_paths")
def test_on_windows_an_import_file_naming_a_device_says_which_line(tmp_path: Path) -> None:
    csv = tmp_path / "fleet.csv"
    csv.write_text("machine,product,key,kms_host\npc1,ProPlus2021,,\nAUX,ProPlus2021,,\n")
    with pytest.raises(UsageError, match="line 3: computer name 'AUX' cannot be used on Windows"):
        list(read_csv(csv))


def test_elsewhere_the_same_names_still_work() -> None:
    assert os.name == "posix"
    assert machine_name("CON") == "con" and machine_name("pc.") == "pc."
