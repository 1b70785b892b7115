"""``ospp --quiet``: silent on success, failures still printed; servers log warnings only."""

from __future__ import annotations

from tests.conftest import Ospp
from tests.kmsutil import Host, make_host


def test_quiet_success_prints_nothing_and_failure_still_does(ospp: Ospp):
    done = ospp("--quiet", "install-product", "ProPlus2021")
    assert done.code == 0 and done.out == ""
    assert ospp("-q", "/dstatus").out == ""
    failed = ospp("--quiet", "/inpkey:AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
    assert failed.code != 0 and "ERROR CODE:" in failed.out
    as_json = ospp("--quiet", "dstatus", "--json")
    assert as_json.code == 0 and as_json.json()["ok"] is True


def test_quiet_status_prints_no_reminder(ospp: Ospp):
    """/dstatus's reminder of a product not yet activated goes to stderr, but --quiet
    prints nothing when the command succeeds: not that either."""
    ospp.install("ProPlus2021")
    loud = ospp.proc("/dstatus")
    assert "not activated yet" in loud.err, loud.err
    for args in (("-q", "/dstatus"), ("/dstatusall", "--quiet")):
        done = ospp.proc(*args)
        assert (done.code, done.out, done.err) == (0, "", ""), (args, done)


def test_quiet_server_logs_only_warnings(ospp: Ospp):
    make_host(ospp, activate=False)
    # Host passes its extra arguments after 'kms serve'; --quiet belongs before the command.
    host = Host(ospp)
    host.stop()
    loud = len(host.stderr_lines)
    assert loud >= 2
    quiet_host = QuietHost(ospp)
    quiet_host.stop()
    assert quiet_host.stderr_lines and all('"warning"' in x for x in quiet_host.stderr_lines)


class QuietHost(Host):
    def start(self, now: str | None = None) -> None:
        import os
        import subprocess

        from ospp.core.background import start_server

        env = {**os.environ, **self.ospp.env}
        args = ["--quiet", "kms", "serve", "--listen", "127.0.0.1:0", "--log", str(self.log)]
        self.proc, self.port = start_server(args, env, subprocess.PIPE)


def test_quiet_may_come_after_the_command_as_json_may(ospp: Ospp):
    done = ospp("install-product", "ProPlus2021", "pc1", "--quiet")
    assert done.code == 0 and done.out == ""
    assert ospp("/dstatus", "pc1", "-q").out == ""
    failed = ospp("/inpkey:AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "pc1", "-q")
    assert failed.code != 0 and "ERROR CODE:" in failed.out
    # after '--' it is an argument like any other: here a computer name, and not a valid one
    literal = ospp("/dstatus", "--", "-q")
    assert literal.code == 2 and "'-q'" in literal.out + literal.err


def test_quiet_fleet_status_prints_only_what_failed(ospp: Ospp):
    """A report like /dstatus: under --quiet its rows are not printed, the exit status and a
    store that could not be read still are."""
    ospp("fleet", "create", "ws", "3", "--product", "ProPlus2021")
    for args in (["fleet", "status"], ["fleet", "status", "--csv"]):
        done = ospp("-q", *args)
        assert done.code == 0 and done.out == "", done.out
    (ospp.home / "client" / "machines" / "ws2" / "licenses.db").write_bytes(b"not a store" * 100)
    failed = ospp("fleet", "status", "-q")
    assert failed.code == 3 and failed.out == "", failed.out
    assert "ws2" in failed.err and "could not be read" in failed.err
