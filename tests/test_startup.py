"""``ospp /dstatus`` imports only what it uses: start-up time is most of what it costs.

bench/startup.py measures the time; this test keeps out the modules whose import is known to be
expensive, or that only other commands need, on every kind of store /dstatus reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import Ospp
from tests.kmsutil import Host, client, make_host

# What must not load, and why (costs by python -X importtime on a 2-core machine).
NOT_ON_THE_PATH = {
    "_hashlib": "OpenSSL's libcrypto, 3 to 20 ms: seals and hashes use ospp.core.digest",
    "hashlib": "imports _hashlib",
    "hmac": "imports hashlib",
    "ssl": "OpenSSL again; nothing here speaks TLS",
    "cryptography": "signatures are checked again only when a seal does not match",
    "ospp.protocol.crypto": "imports cryptography",
    "asyncio": "the KMS host's event loop",
    "socket": "no network on a status read",
    "dns": "dnspython: KMS discovery runs on /act",
    "logging": "servers' logs",
    "pathlib": "imports urllib.parse and ipaddress, 16 million instructions (a tenth of a "
    "hello-world click command): paths on the way of every command are os.path strings",
    "urllib": "via pathlib",
    "ipaddress": "via urllib.parse",
    "dataclasses": "defining a dataclass compiles its methods at import, 0.3 to 0.5 ms each",
    "secrets": "imports random, base64 and hmac; only needed to create keys",
    "random": "via secrets",
    "base64": "via secrets; anchors are decoded with binascii",
    "zlib": "libz, for CRC-32s that binascii computes too",
    "struct": "only compiling a .po catalogue needs it",
    "subprocess": "no child processes",
    "email": "no mail or HTTP parsing",
    "http": "the status page's server",
    "psycopg": "the authority's PostgreSQL driver",
    "platformdirs": "OSPP_HOME is set, so no per-OS directory is looked up",
    "ospp.authority": "the activation authority",
    "ospp.kmshost": "the KMS host",
    "ospp.dns": "DNS discovery and publishing",
    "ospp.machine.kmsclient": "the KMS client speaks to hosts on /act",
    "ospp.machine.store_changes": "the changes to a store's licences: /dstatus only reads",
    "ospp.machine.history": "/dhistorykms and /dhistoryacterr, and the entries /act records",
    "ospp.cli.failures": "what fails outside a command: usage errors, output not written",
    "ospp.cli.activate": "another command module",
    "ospp.cli.admin": "another command module",
    "ospp.cli.extra": "another command module",
}

# The probe runs without site (-S), with ospp's source and the installed packages put on sys.path
# as a wheel install has them: an editable install's import hook, which site would load, imports
# pathlib itself.
PROBE = (
    "import sys\n"
    f"sys.path[:0] = [{str(Path(__file__).resolve().parent.parent)!r}, "
    f"{sysconfig.get_paths()['purelib']!r}]\n"
    "from ospp.cli import main\n"
    "sys.argv = ['ospp', '/dstatus']\n"
    "try:\n"
    "    main()\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "else:\n"
    "    code = 0\n"
    "modules = sorted(sys.modules)\n"
    "import json\n"  # only now: /dstatus may not have imported it
    "print('MODULES', json.dumps(modules))\n"
    "print('STATUS', code)\n"
)


def loaded(ospp: Ospp, machine: str | None = None) -> tuple[str, set[str]]:
    """What ``ospp /dstatus`` printed in a fresh process, and the modules it had imported."""
    probe = PROBE.replace("'/dstatus'", f"'/dstatus', {machine!r}") if machine else PROBE
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, **ospp.env},
        timeout=60,
    )
    lines = done.stdout.splitlines()
    assert lines[-1] == "STATUS 0", done.stdout + done.stderr
    modules = set(json.loads(lines[-2].removeprefix("MODULES ")))
    return "\n".join(lines[:-2]), modules


def heavy(modules: set[str]) -> dict[str, str]:
    return {
        name: why
        for name, why in NOT_ON_THE_PATH.items()
        if name in modules or any(m.startswith(name + ".") for m in modules)
    }


def test_the_probe_sees_what_is_imported(ospp: Ospp):
    # sanity: a module the path needs is seen, so an empty list below means something
    _, modules = loaded(ospp)
    assert {"ospp.cli.verbs", "ospp.machine.status", "sqlite3"} <= modules
    assert "site" not in modules  # nor an editable install's hook, which imports pathlib


def test_dstatus_with_a_product_installed(ospp: Ospp):
    assert ospp("install-product", "ProPlus2021").code == 0
    out, modules = loaded(ospp)
    assert "---OOB_GRACE---" in out
    assert heavy(modules) == {}
    # no activation, no lab clock file, text output: nothing here is JSON (about 1 ms)
    assert "json" not in modules


def test_dstatus_with_a_mak_activation(ospp: Ospp):
    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install()
    assert ospp("/inpkey:" + key, "--act").code == 0
    out, modules = loaded(ospp)
    assert "---LICENSED---" in out
    assert "ospp.machine.hardware" in modules  # the hardware binding was checked
    assert heavy(modules) == {}


@pytest.fixture
def host(ospp: Ospp):
    make_host(ospp)
    h = Host(ospp)
    yield h
    if h.alive():
        h.stop()


def test_dstatus_with_a_kms_activation(ospp: Ospp, host: Host):
    for n in range(1, 6):  # the fifth client reaches the threshold; the others retry
        client(ospp, f"c{n}", host)
        ospp("/act", f"c{n}")
    assert ospp("/act", "c1").code == 0
    out, modules = loaded(ospp, "c1")
    assert "---LICENSED---" in out
    assert heavy(modules) == {}


def test_dstatus_checks_signatures_when_the_seal_does_not_match(ospp: Ospp):
    """The other side of the list: an activation not sealed here is verified with
    cryptography, so what /dstatus shows as licensed is still what a signature vouches for."""
    import sqlite3

    key = ospp("center", "issue-key", "--product", "ProPlus2021", "--json").data()["key"]
    ospp.install()
    assert ospp("/inpkey:" + key, "--act").code == 0
    with sqlite3.connect(ospp.store_file()) as conn:
        for sku_id, blob in conn.execute(
            "SELECT sku_id, activation FROM licenses WHERE activation IS NOT NULL"
        ).fetchall():
            act = json.loads(blob)
            del act["seal"]
            conn.execute(
                "UPDATE licenses SET activation=? WHERE sku_id=?", (json.dumps(act), sku_id)
            )
    out, modules = loaded(ospp)
    assert "---LICENSED---" in out
    assert "cryptography" in modules


GC_PROBE = (
    "import gc, sys\n"
    "{before}\n"
    "runs = []\n"
    "gc.callbacks.append(lambda phase, info: runs.append(info) if phase == 'start' else None)\n"
    "from ospp.cli import _import, main\n"
    "_import('ospp.cli.verbs')\n"  # as the command /dstatus is looked up
    "imported = len(runs)\n"  # before anything else allocates
    "sys.argv = ['ospp', '/dstatus']\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('RESULT', imported, gc.isenabled(), gc.get_freeze_count() > 0)\n"
)


@pytest.mark.parametrize("collecting", [True, False])
def test_the_cli_is_imported_without_collections(ospp: Ospp, collecting: bool, tmp_path: Path):
    """No collection runs while the CLI and the command's module are imported (they would
    only traverse objects that live as long as the process), and the collector is left as
    the importer had it: on for commands and servers, off where a caller turned it off."""
    import ospp as package

    ospp.install()
    # Bytecode compiled beforehand, into a directory of its own, as an installed ospp has it:
    # a module compiled from source is compiled before its first line (which pauses the
    # collector) runs, and compiling may set off a collection of its own.
    env = {**os.environ, **ospp.env, "PYTHONPYCACHEPREFIX": str(tmp_path / "bytecode")}
    source = str(Path(package.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", source], env=env, check=True)
    before = "" if collecting else "gc.disable()"
    done = subprocess.run(
        [sys.executable, "-c", GC_PROBE.format(before=before)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert f"RESULT 0 {collecting} True" in done.stdout, done.stdout + done.stderr


def test_an_in_process_caller_keeps_its_collector(tmp_path: Path):
    """A failed import of the CLI leaves the collector on, and a command's module imported
    in-process (as tests do) is not frozen, with the caller's garbage, out of its reach."""
    probe = (
        "import gc, sys\n"
        "sys.modules['ospp.cli.slash'] = None\n"  # the import of ospp.cli fails half-way
        "try:\n"
        "    import ospp.cli\n"
        "except ImportError:\n"
        "    pass\n"
        "print('AFTER A FAILED IMPORT', gc.isenabled())\n"
        "del sys.modules['ospp.cli.slash']\n"
        "from ospp.cli import _import\n"
        "frozen = gc.get_freeze_count()\n"
        "_import('ospp.cli.verbs')\n"
        "print('FROZEN MORE', gc.get_freeze_count() != frozen, gc.isenabled())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "AFTER A FAILED IMPORT True" in done.stdout, done.stdout + done.stderr
    assert "FROZEN MORE False True" in done.stdout, done.stdout + done.stderr
