"""The directory variables: empty is an error, and OSPP_HOME alone sandboxes every role."""

from __future__ import annotations

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
    assert _run("kms", "status", env=env).returncode == 0
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


@pytest.mark.parametrize("where", ["missing", "directory", "fifo"])
def test_a_resolv_conf_that_cannot_be_read_is_named(ospp: Ospp, tmp_path: Path, where: str):
    """OSPP_RESOLV_CONF names a file the user chose: one that is not there is their typo, not
    a network without DNS (what a machine with no resolv.conf of its own is). A FIFO is
    refused, not waited on."""
    conf = {"missing": tmp_path / "no-such-resolv.conf", "directory": tmp_path}.get(
        where, tmp_path / "fifo"
    )
    if where == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(conf)
    ospp.install()
    before = ospp("dhistorykms", "--json").data()
    diag = ospp("dnsdiag", "--json", env={"OSPP_RESOLV_CONF": str(conf)})
    assert diag.code == 2
    error = diag.json()["error"]
    assert error["code"] == "0x80070057"
    assert "OSPP_RESOLV_CONF" in error["message"] and str(conf) in error["message"]
    act = ospp("/act", env={"OSPP_RESOLV_CONF": str(conf)})
    assert act.code != 0 and "0x80070057" in act.out and str(conf) in act.out
    assert before["entries"] == []  # a fresh machine has no KMS attempts
