"""The directory variables: empty is an error, and OSPP_HOME alone sandboxes every role."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Ospp


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OSPP_")}
    return subprocess.run(
        [sys.executable, "-m", "ospp", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", ["OSPP_HOME", "OSPP_CENTER_HOME", "OSPP_KMS_HOME"])
def test_an_empty_directory_variable_is_an_error(ospp: Ospp, name: str) -> None:
    command = {"OSPP_HOME": ["/dstatus"], "OSPP_CENTER_HOME": ["center", "keys"]}.get(
        name, ["kms", "status"]
    )
    ran = ospp(*command, "--json", env={name: ""})
    assert ran.code == 2
    error = ran.json()["error"]
    assert name in error["message"] and error["code"] == "0x80070057"


def test_ospp_home_alone_keeps_the_authority_and_kms_host_inside(tmp_path: Path) -> None:
    home = tmp_path / "sandbox"
    env = {"OSPP_HOME": str(home), "OSPP_RESOLV_CONF": os.devnull}
    assert _run("center", "issue-key", "--product", "ProPlus2021", env=env).returncode == 0
    assert _run("kms", "set", "--renewal-interval", "10080", env=env).returncode == 0
    assert (home / "center" / "center.db").exists()
    assert (home / "kms" / "kms.db").exists()
    # an explicit OSPP_CENTER_HOME still wins
    other = tmp_path / "elsewhere"
    env2 = {**env, "OSPP_CENTER_HOME": str(other)}
    assert _run("center", "keys", env=env2).returncode == 0
    assert (other / "center.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["trust", "add"],
        ["center", "confirm-batch"],
        ["kms", "dns", "set", "--tsig-keyfile"],
    ],
)
@pytest.mark.parametrize("source", ["/dev/zero", "dir", "big", "latin1"])
def test_files_from_a_user_are_capped_and_checked(
    ospp: Ospp, tmp_path: Path, command: list[str], source: str
) -> None:
    """/dev/zero used to hang 'trust add'; every file read from a user is capped."""
    paths = {"/dev/zero": Path("/dev/zero"), "dir": tmp_path}
    big = tmp_path / "big.txt"
    big.write_bytes(b"#" * (2 * 1024 * 1024))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    paths.update(big=big, latin1=latin)
    args = [*command, str(paths[source])]
    if command[:2] == ["center", "confirm-batch"]:
        args.append(str(tmp_path / "out.csv"))
    ran = ospp.proc(*args, "--json", timeout=30)
    assert ran.code == 2, ran.out + ran.err
    assert "Traceback" not in ran.err


def test_trust_add_reads_standard_input(ospp: Ospp) -> None:
    pub = ospp("center", "pubkey").out
    ran = ospp("trust", "add", "-", "--json", input=pub)
    assert ran.code == 0 and len(ran.data()["fingerprint"]) == 16


def _dump(path: Path) -> list[str]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return list(conn.iterdump())


@pytest.mark.parametrize("where", ["missing", "directory", "fifo", "device", "binary"])
def test_a_resolv_conf_that_cannot_be_read_is_named(ospp: Ospp, tmp_path: Path, where: str):
    """OSPP_RESOLV_CONF names a file the user chose: one that is not there is their typo, not
    a network without DNS (what a machine with no resolv.conf of its own is). A FIFO or a
    device that never ends is refused, not waited on or read for ever. Nothing is recorded:
    bad input changes nothing."""
    conf = {"missing": tmp_path / "no-such-resolv.conf", "directory": tmp_path}.get(
        where, tmp_path / "named-resolv.conf"
    )
    if where == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(conf)
    elif where == "device":
        conf = Path("/dev/zero")
        if not conf.exists():
            pytest.skip("no /dev/zero here")
    elif where == "binary":
        conf.write_bytes(b"nameserver 127.0.0.1\nsearch \xff\xfe.example\n")
    ospp.install()
    before = _dump(ospp.store_file())
    diag = ospp("dnsdiag", "--json", env={"OSPP_RESOLV_CONF": str(conf)})
    assert diag.code == 2
    error = diag.json()["error"]
    assert error["code"] == "0x80070057"
    assert "OSPP_RESOLV_CONF" in error["message"] and str(conf) in error["message"]
    act = ospp("/act", env={"OSPP_RESOLV_CONF": str(conf)})
    assert act.code == 2 and "0x80070057" in act.out and str(conf) in act.out
    assert _dump(ospp.store_file()) == before


def test_a_malformed_dns_server_changes_nothing(ospp: Ospp):
    ospp.install()
    before = _dump(ospp.store_file())
    act = ospp("/act", env={"OSPP_DNS": "not a:server:x"})
    assert act.code == 2 and "0x80070057" in act.out and "OSPP_DNS" in act.out
    assert _dump(ospp.store_file()) == before
