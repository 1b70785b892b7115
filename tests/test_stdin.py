"""A file argument of '-' reads standard input: confirm-batch, trust add, dns set, import."""

from __future__ import annotations

from tests.conftest import Ospp


def test_trust_add_reads_stdin(ospp: Ospp, tmp_path):
    other_center = {"OSPP_CENTER_HOME": str(tmp_path / "other-center")}
    assert ospp("center", "init", "--name", "Other", env=other_center).code == 0
    pub = ospp("center", "pubkey", env=other_center).out
    before = ospp("trust", "list", "--json").data()["anchors"]
    ran = ospp("trust", "add", "-", input=pub)
    assert ran.code == 0, ran.out
    assert "Trusted authority Other" in ran.out
    after = ospp("trust", "list", "--json").data()["anchors"]
    assert len(after) == len(before) + 1
    bad = ospp("trust", "add", "-", input="not json")
    assert bad.code == 2 and "is not an authority public key file" in bad.out


def test_confirm_batch_reads_stdin(ospp: Ospp, tmp_path):
    from tests.test_authority import iid_of, issue

    ospp.install("ProPlus2021", "b1")
    ospp("/inpkey:" + issue(ospp, limit=5), "b1")
    out = tmp_path / "cids.csv"
    ran = ospp("center", "confirm-batch", "-", str(out), input=f"{iid_of(ospp, 'b1')}\n12345\n")
    assert ran.code == 1, ran.out  # '12345' is not an installation ID
    assert "1 of 2 installation IDs confirmed" in ran.out
    assert len(out.read_text().splitlines()) == 3  # header and two rows


def test_dns_set_reads_the_tsig_key_from_stdin(ospp: Ospp):
    key = 'key "kms-update" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0";\n};\n'
    ran = ospp(
        "kms", "dns", "set", "--server", "127.0.0.1", "--domain", "test.example",
        "--hostname", "kms1.test.example", "--tsig-keyfile", "-", "--json",
        input=key,
    )  # fmt: skip
    assert ran.code == 0, ran.out
    assert ran.data()["tsig_name"] == "kms-update"


def test_fleet_import_reads_stdin(ospp: Ospp, tmp_path):
    ospp("fleet", "create", "ws", "3", "--product", "ProPlus2021")
    exported = tmp_path / "site.csv"
    assert ospp("fleet", "export", str(exported)).code == 0
    text = exported.read_text().replace("ws", "pc")
    ran = ospp("fleet", "import", "-", "--json", input=text)
    assert ran.code == 0, ran.out
    assert ospp("machines", "--json").data()["machines"] == [
        "pc1",
        "pc2",
        "pc3",
        "ws1",
        "ws2",
        "ws3",
    ]
    again = ospp("fleet", "import", "-", input=text)  # all or nothing: they exist now
    assert again.code == 2 and "line 2" in again.out
