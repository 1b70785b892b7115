"""Standard output in an encoding that cannot hold every character: cp1252 (what Windows
writes redirected output in), Latin-1 locales. A character it lacks is written as a backslash
escape; the command neither fails half way (after it acted) nor reports a bug."""

from __future__ import annotations

import os
import subprocess
import sys

from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import Host, make_host, raw_request


def run(ospp: Ospp, encoding: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run ``ospp ARGS`` with standard output in ``encoding``; its output read back in it."""
    done = subprocess.run(
        [sys.executable, "-m", "ospp", *args],
        env={**os.environ, **ospp.env, "PYTHONIOENCODING": encoding},
        input=stdin.encode(),
        capture_output=True,
        timeout=60,
    )
    return done.returncode, done.stdout.decode(encoding), done.stderr.decode("utf-8", "replace")


def test_a_name_cp1252_lacks_is_escaped_and_the_command_succeeds(ospp: Ospp, tmp_path) -> None:
    code, out, err = run(ospp, "cp1252", "center", "init", "--name", "東京")
    assert code == 0 and "Authority \\u6771\\u4eac (" in out, (out, err)
    public = tmp_path / "pub.json"
    public.write_text(ospp("center", "pubkey").out)
    code, out, err = run(ospp, "cp1252", "trust", "add", str(public))
    assert code == 0 and "Trusted authority \\u6771\\u4eac" in out, (out, err)
    code, out, _ = run(ospp, "cp1252", "trust", "list")
    assert code == 0 and "\\u6771\\u4eac" in out
    # what the encoding has is written as it is
    code, out, _ = run(ospp, "cp1252", "trust", "list", "--json")
    assert code == 0 and "\\u6771\\u4eac" in out


def test_a_workstation_name_a_client_sent_is_listed_in_cp1252(ospp: Ospp) -> None:
    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            assert conn.call(raw_request(workstation="東京-PC"))["ok"]
    finally:
        host.stop()
    for extra in ((), ("--csv",)):
        code, out, err = run(ospp, "cp1252", "kms", "clients", *extra)
        assert code == 0 and "\\u6771\\u4eac-PC" in out, (extra, out, err)


def test_a_swedish_phone_call_ends_well_on_a_latin1_terminal(ospp: Ospp) -> None:
    """The Swedish closing line quotes with ” (U+201D), which Latin-1 lacks: the caller was
    already read the confirmation ID, so the call must not end in an internal error."""
    ospp("install-product", "ProPlus2021")
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--channel", "mak").out.strip()
    assert ospp(f"/inpkey:{key}").code == 0
    iid = ospp("/dinstid", "--json").data()["products"][0]["installation_id"]
    code, out, err = run(
        ospp, "iso-8859-1", "center", "phone", "--lang", "sv", stdin=iid + "\n" * 10
    )
    assert code == 0, (out, err)
    assert "Samtalet är klart" in out and "\\u201dLicensierad produkt\\u201d" in out
