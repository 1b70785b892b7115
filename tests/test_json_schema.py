"""Every command's --json output, success and failure, against its schema (docs/schema/).

The conftest checks every --json output of every test against the schema of its command
(:func:`tests.conftest.check_json`); the scenario here makes sure that each command is seen
at least once succeeding and once failing.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import jsonschema  # type: ignore[import-untyped]
import pytest

from ospp.cli import cli
from ospp.cli.reports import schemas
from ospp.cli.schema import command_paths, strict
from tests.conftest import GVLK_2016, GVLK_2021, PRODUCT, Ospp, Ran, check_json
from tests.kmsutil import Host

# Commands that print no JSON: a transcript, a public key, a server, help.
NO_JSON = {"demo", "center pubkey", "center serve", "kms serve", "help"}
# A real DNS server is needed for these to succeed: tests/test_dns.py runs them (the conftest
# checks their output there); here they fail.
NEEDS_DNS = {"dnsdiag", "kms dns publish"}
# Token-based activation is out of scope: these always refuse (their failure is checked).
ALWAYS_REFUSE = {"stokflag", "ctokflag", "dtokcerts", "dtokils", "rtokil", "tokact"}


def _all_commands() -> set[str]:
    return set(command_paths(cli, click.Context(cli, info_name="ospp")))


def test_every_command_with_json_has_a_schema_and_nothing_else_has():
    assert set(schemas()) == _all_commands() - NO_JSON


def test_every_output_also_matches_the_schema_of_any_command(ospp: Ospp):
    from ospp.cli.schema import any_command

    for args in (["version"], ["dstatus", "nope"], ["/no-such-verb"], ["kms", "status"]):
        jsonschema.validate(ospp(*args, "--json").json(), any_command())


class Seen:
    def __init__(self, ospp: Ospp) -> None:
        self.ospp = ospp
        self.ok: set[str] = set()
        self.failed: set[str] = set()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Ran:
        ran = self.ospp(*args, "--json", input=input, env=env)
        self.note(ran)
        return ran

    def note(self, ran: Ran) -> None:
        whole = check_json(ran.out)
        assert whole is not None, ran.out + ran.err
        (self.ok if whole["ok"] else self.failed).add(whole["command"])
        if whole["ok"]:
            assert ran.code == 0, ran.out
        else:
            assert ran.code == whole["error"]["exit_status"] != 0, ran.out


def _succeed(run: Seen, *args: str, input: str | None = None) -> Ran:
    ran = run(*args, input=input)
    assert ran.code == 0, (args, ran.out)
    return ran


def test_every_command_succeeds_and_fails_with_output_its_schema_allows(
    ospp: Ospp, tmp_path: Path
) -> None:
    run = Seen(ospp)
    ok = lambda *args, input=None: _succeed(run, *args, input=input)  # noqa: E731
    # the authority and its keys
    ok("center", "init")
    ok("center", "migrate")
    mak = ok("center", "issue-key", "--product", PRODUCT, "--limit", "20").data()["key"]
    spare = ok("center", "issue-key", "--product", PRODUCT, "--limit", "1").data()["key"]
    ok("center", "keys")
    ok("center", "extend", mak, "--by", "2")
    ok("center", "block", spare)
    anchor = tmp_path / "anchor.json"
    anchor.write_text(ospp("center", "pubkey").out)
    ok("trust", "add", str(anchor))
    ok("trust", "list")
    # one machine through the ospp.vbs verbs
    ok("products")
    licence = tmp_path / "ProPlus2019VL_KMS_Client_AE-ppd.xrm-ms"
    licence.write_text("<x/>")
    ok("install-product", PRODUCT, "pc1")
    ok("inslic", str(licence), "pc1")
    ok("machines")
    ok("version", "pc1")
    ok("inpkey", mak, "pc1")
    ok("act", "pc1")
    for args in (
        ["dstatus", "pc1"],
        ["dstatusall", "pc1"],
        ["ddescr", "0xC004F074"],
        ["dcmid", "pc1"],
        ["dinstid", "pc1"],
        ["dhistoryacterr", "pc1"],
        ["dhistorykms", "pc1"],
        ["puserops", "pc1"],
        ["duserops", "pc1"],
        ["osppsvcauto", "pc1"],
        ["osppsvcrestart", "pc1"],
        ["hardware", "show", "pc1"],
        ["hardware", "change", "disk", "pc1"],
        ["service", "pc1"],
        ["unpkey", mak[-5:], "pc1"],
    ):
        ok(*args)
    # phone activation
    ok("install-product", PRODUCT, "ph1")
    ok("inpkey", mak, "ph1")
    iid = ok("dinstid", "ph1").data()["products"][0]["installation_id"]
    cid = ok("center", "confirm", iid).data()["cid"]
    ok("actcid", cid, "ph1")
    batch_in, batch_out = tmp_path / "iids.txt", tmp_path / "cids.csv"
    batch_in.write_text(iid + "\n")
    ok("center", "confirm-batch", str(batch_in), str(batch_out))
    groups = "\n".join(iid[i : i + 7] for i in range(0, len(iid), 7))
    ok("center", "phone", input=groups + "\n")
    # a KMS client's settings
    ok("install-product", PRODUCT, "k1")
    ok("inpkey", GVLK_2021, "k1")
    for args in (
        ["sethst", "kms.example.com", "k1"],
        ["setprt", "1688", "k1"],
        ["remhst", "k1"],
        ["cachst", "TRUE", "k1"],
        ["actype", "2", "k1"],
        ["actype", "0", "k1"],
        ["skms-domain", "example.com", "k1"],
        ["ckms-domain", "k1"],
        ["kms-policy", "any", "k1"],
        ["rearm", "k1"],
    ):
        ok(*args)
    # the KMS host
    host_key = ok("center", "issue-key", "--product", PRODUCT, "--channel", "kms-host")
    ok("kms", "install-key", host_key.data()["key"])
    host_iid = ok("kms", "dinstid").data()["installation_id"]
    ok("kms", "actcid", ok("center", "confirm", host_iid).data()["cid"])
    ok("kms", "activate")
    # a second licence pack (Office 2010): the several-pack shapes, then removed again
    older = ok("center", "issue-key", "--product", "ProPlus2010", "--channel", "kms-host")
    ok("kms", "install-key", older.data()["key"])
    assert len(ok("kms", "dinstid").data()["packs"]) == 2
    assert len(ok("kms", "activate").data()["packs"]) == 1
    assert len(ok("kms", "status").data()["packs"]) == 2
    ok("kms", "uninstall-key", older.data()["key"][-5:])
    ok("kms", "status")
    ok("kms", "set", "--activation-interval", "120", "--renewal-interval", "10080")
    ok("kms", "clients")
    ok("kms", "dns", "set", "--server", "127.0.0.1:53", "--domain", "example.com",
       "--hostname", "kms.example.com")  # fmt: skip
    ok("kms", "dns", "disable")
    ok("kms", "dns", "enable")
    ok("kms", "dns", "records")
    host = Host(ospp)
    try:
        ok("kms", "ping", host.address)
        ok("sethst", host.address, "k1")
        run("act", "k1")  # the count is too low: a failure with data
    finally:
        host.stop()
    # slmgr on a machine and on the host
    ok("install-product", "ProPlus2016", "s1")
    for args in (
        ["ipk", GVLK_2016, "s1"],
        ["ilc", str(licence), "s1"],
        ["dli", "s1"],
        ["dlv", "s1"],
        ["xpr", "s1"],
        ["skms", "kms.example.com", "s1"],
        ["ckms", "s1"],
        ["skms-domain", "example.com", "s1"],
        ["ckms-domain", "s1"],
        ["skhc", "s1"],
        ["ckhc", "s1"],
        ["act-type", "0", "s1"],
        ["rearm", "s1"],
        ["cpky", "s1"],
        ["upk", "s1"],
        ["dti"],  # the KMS host's installation ID
        ["ato"],  # the KMS host, activated again online
        ["xpr"],
        ["dli"],  # the KMS host's own licence
        ["dlv"],
        ["dlv", "all"],  # the host's and the machine's
        ["dlv", "k1"],  # a KMS client
        ["sprt", "1688"],
        ["sai", "120"],
        ["sri", "10080"],
        ["sdns"],
        ["cdns"],
        ["spri"],
        ["cpri"],
    ):
        ok("slmgr", *args)
    ok("install-product", PRODUCT, "s2")
    ok("slmgr", "ipk", mak, "s2")
    iid = ok("slmgr", "dti", "s2").data()["installation_id"]
    ok("slmgr", "atp", ok("center", "confirm", iid).data()["cid"], "s2")
    ok("install-product", PRODUCT, "s3")
    ok("slmgr", "ipk", mak, "s3")
    ok("slmgr", "ato", "s3")
    # the lab clock
    for args in (["show"], ["set", "2027-03-01T09:00:00Z"], ["advance", "1d"], ["freeze"],
                 ["run"], ["reset"]):  # fmt: skip
        ok("clock", *args)
    # a fleet
    ok("fleet", "create", "f", "3", "--product", PRODUCT)
    ok("fleet", "inpkey", mak, "--machines", "f*")
    ok("fleet", "status")
    export = tmp_path / "fleet.csv"
    ok("fleet", "export", str(export), "--machines", "f*")
    ok("fleet", "remove", "f*")
    ok("fleet", "import", str(export))
    ok("fleet", "timeline")
    ok("fleet", "act", "--machines", "f*")
    ok("install-product", PRODUCT, "w1")
    ok("wizard", "w1", input=f"{mak}\n1\n")
    # failures: one of ospp's own errors for some, a usage error from click for every command
    run("dstatus", "nope")
    assert run("unpkey", "ZZZZZ", "pc1").data() == {"machine": "pc1", "uninstalled": []}
    run("dnsdiag", "k1")
    run("kms", "dns", "publish")
    run("center", "confirm", "123")
    for token in ALWAYS_REFUSE:
        run(token, *(["x"] if token in ("rtokil", "tokact") else []))
    for command in sorted(schemas()):
        ran = run(*command.split(), "--no-such-option")
        assert ran.code == 2 and ran.json()["command"] == command
    missing_ok = set(schemas()) - run.ok - ALWAYS_REFUSE - NEEDS_DNS
    assert not missing_ok, sorted(missing_ok)
    assert run.failed == set(schemas())


def test_usage_and_internal_errors_before_a_command_keep_the_envelope(ospp: Ospp):
    ran = ospp("/no-such-verb", "--json")
    whole = check_json(ran.out)
    assert whole is not None and whole["command"] == "" and whole["data"] is None
    assert ran.code == 2 and whole["error"]["exit_status"] == 2


@pytest.mark.parametrize("field", ["schema", "ok", "command", "data", "error"])
def test_a_report_field_named_like_the_envelope_cannot_collide(field: str):
    from ospp.cli.base import envelope

    whole = envelope("x", {field: "from the report"}, None)
    assert list(whole) == ["schema", "ok", "command", "data", "error"]
    assert (whole["schema"], whole["ok"], whole["command"], whole["error"]) == (1, True, "x", None)
    assert whole["data"] == {field: "from the report"}


def test_published_schemas_are_valid_and_accept_fields_a_later_version_1_adds():
    folder = Path(__file__).resolve().parent.parent / "docs" / "schema"
    for path in folder.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
    schema = schemas()["version"]
    later = {"script_version": "1", "ospp_version": "2", "added_later": True}
    whole = {"schema": 1, "ok": True, "command": "version", "data": later, "error": None}
    jsonschema.validate(whole, schema)  # what scripts validate against: open to additions
    with pytest.raises(jsonschema.ValidationError):  # what the tests use: closed
        jsonschema.validate(whole, strict(schema))
    with pytest.raises(jsonschema.ValidationError):  # a failure must carry the error object
        jsonschema.validate({**whole, "ok": False}, schema)


@pytest.mark.parametrize("command", ["dstatus", "dstatusall"])
def test_status_of_a_machine_with_no_licence_has_every_field(ospp: Ospp, command: str):
    """A machine with nothing installed reports the same fields as any other: scripts read
    now_at and reminders without checking first (checked against docs/schema by ospp.proc)."""
    ran = ospp.proc(command, "--json")
    assert ran.code == 0, ran.out
    data = ran.data()
    assert data["products"] == [] and data["reminders"] == [], data
    assert data["now_at"].endswith("Z"), data
