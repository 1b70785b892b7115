"""/inslic:PATH: a product's licences from an Office licence file, as volume conversions do."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

from ospp.core.catalog import Channel, catalog, licence_file_stem
from tests.conftest import Ospp

GVLK_2021 = "FXYTK-NJJ8C-GB6DW-3DYQT-6F7TH"
KMS_FILES = [  # what 'dir /b ..\root\Licenses16\ProPlus2021VL_KMS*.xrm-ms' lists
    "ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms",
    "ProPlus2021VL_KMS_Client_AE-ul.xrm-ms",
    "ProPlus2021VL_KMS_Client_AE-ul-oob.xrm-ms",
]


def dump(ospp: Ospp, machine: str = "localhost") -> list[str]:
    path = ospp.store_file(machine)
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


@pytest.fixture
def licences(tmp_path: Path) -> Path:
    folder = tmp_path / "root" / "Licenses16"
    folder.mkdir(parents=True)
    for name in [*KMS_FILES, "ProPlus2021VL_MAK_AE-pl.xrm-ms", "client-issuance-root.xrm-ms"]:
        # ospp reads a licence file's name, not what it holds
        (folder / name).write_text('<?xml version="1.0" encoding="utf-8"?><rg:licenseGroup/>')
    return folder


def test_volume_conversion_as_admins_script_it(ospp: Ospp, licences: Path):
    refused = ospp(f"/inpkey:{GVLK_2021}")
    assert refused.code == 1 and "ERROR CODE: 0xC004F069" in refused.out
    for name in KMS_FILES:
        ran = ospp.proc(f"/inslic:{licences / name}")
        assert ran.code == 0, ran.out
        assert ran.out.splitlines() == [
            "---Processing--------------------------",
            "-" * 39,
            f"Installing Office license: {licences / name}",
            "Office license installed successfully.",
            "-" * 39,
            "---Exiting-----------------------------",
        ]
    assert ospp(f"/inpkey:{GVLK_2021}").code == 0
    (product,) = ospp("dstatus", "--json").data()["products"]
    kms_client = catalog().sku("fbdb3e18-a8ef-4fb3-9183-dffd60bd0984")  # ProPlus 2021's public
    assert kms_client is not None and kms_client.product.id == "ProPlus2021"
    assert product["sku_id"] == kms_client.sku_id
    assert product["key_last5"] == GVLK_2021[-5:]


def test_json_names_the_product_and_what_was_added(ospp: Ospp, licences: Path):
    path = str(licences / "ProPlus2021VL_MAK_AE-pl.xrm-ms")
    first = ospp("inslic", path, "--json").data()
    product = catalog().product("ProPlus2021")
    assert product is not None
    assert first["product_id"] == "ProPlus2021" and first["licence_file"] == path
    assert sorted(first["installed"]) == sorted(
        product.sku(c).sku_id for c in (Channel.KMS_CLIENT, Channel.MAK)
    )
    before = dump(ospp)
    again = ospp("inslic", path, "--json").data()
    assert again["installed"] == [] and dump(ospp) == before
    # no key came with the licences: nothing to activate, nothing keyed
    assert ospp("dstatus", "--json").data()["products"] == []


def test_the_path_keeps_its_case(ospp: Ospp, licences: Path):
    """ospp.vbs lower-cases its whole argument; a path on this system must stay as typed."""
    ran = ospp(f"/INSLIC:{licences / KMS_FILES[0]}")
    assert ran.code == 0, ran.out
    assert f"Installing Office license: {licences / KMS_FILES[0]}" in ran.out


def test_a_machine_is_named_like_any_verb(ospp: Ospp, licences: Path):
    """A computer name selects a machine that exists; a mistyped one is never made."""
    ospp.install("ProPlus2019", "ws1")
    assert ospp(f"/inslic:{licences / KMS_FILES[0]}", "ws1").code == 0
    assert len(dump(ospp, "ws1")) > len(dump(ospp))
    path = str(licences / KMS_FILES[0])
    for args in (["inslic", path, "wsl"], ["slmgr", "/ilc", path, "wsl"]):
        typo = ospp(*args)
        assert typo.code == 2 and "0x800706BA" in typo.out, typo.out
    assert ospp("machines", "--json").data()["machines"] == ["ws1"]


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("ProPlus2021VL_KMS_Client_AE-ppd.xml", "Unrecognized file. Office licenses have an"),
        ("missing.xrm-ms", "File not found: "),
        ("Foo-ppd.xrm-ms", "is not the licence file of a volume product"),
        ("folder.xrm-ms", "is not a regular file"),
        (" ", "no licence file was given"),
    ],
)
def test_bad_files_change_nothing(ospp: Ospp, licences: Path, name: str, detail: str):
    ospp.install("ProPlus2019")
    (licences / "folder.xrm-ms").mkdir()
    (licences / "ProPlus2021VL_KMS_Client_AE-ppd.xml").write_text("<x/>")
    (licences / "Foo-ppd.xrm-ms").write_text("<x/>")
    before = dump(ospp)
    path = name if not name.strip() else str(licences / name)
    for ran in (ospp(f"/inslic:{path}"), ospp("slmgr", "/ilc", path)):
        assert ran.code == 2 and "0x80070057" in ran.out, ran.out
        assert detail in ran.out
    assert dump(ospp) == before


def test_a_kms_hosts_licence_is_refused_as_a_host_key_is(ospp: Ospp, licences: Path):
    ospp.install("ProPlus2019")
    host = licences / "ProPlus2021VL_KMS_Host_AE-ppd.xrm-ms"
    host.write_text("<x/>")
    before = dump(ospp)
    ran = ospp(f"/inslic:{host}")
    assert ran.code == 1 and "ERROR CODE: 0xC004F069" in ran.out
    assert "licence of a KMS host for ProPlus2021" in ran.out and "kms install-key" in ran.out
    assert dump(ospp) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(ospp: Ospp, licences: Path):
    fifo = licences / "ProPlus2021VL_KMS_Client_AE-pl.xrm-ms"
    os.mkfifo(fifo)
    ran = ospp.proc(f"/inslic:{fifo}", timeout=20)
    assert ran.code == 2 and "is not a regular file" in ran.out
    assert dump(ospp) == []


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root reads any file; no chmod here"
)
def test_an_unreadable_file_is_named(ospp: Ospp, licences: Path):
    path = licences / KMS_FILES[0]
    path.chmod(0)
    ran = ospp(f"/inslic:{path}")
    assert ran.code == 2 and f"cannot read the licence file {path}" in ran.out
    assert dump(ospp) == []


def test_standard_users_need_user_operations(ospp: Ospp, licences: Path):
    ospp.install("ProPlus2019")
    path = str(licences / KMS_FILES[0])
    alice = {"OSPP_USER": "alice"}
    before = dump(ospp)
    for args in (["inslic", path], ["slmgr", "/ilc", path]):
        denied = ospp(*args, env=alice)
        assert denied.code == 1 and "0xC004F025" in denied.out + denied.err, args
    assert dump(ospp) == before
    assert ospp("/puserops").code == 0
    assert ospp("inslic", path, env=alice).code == 0
    assert ospp("slmgr", "/ilc", path, env=alice).code == 0


def test_every_volume_licence_name_gives_its_product():
    """Each product's KMS client and MAK licence names lead back to it, except Office 2013's,
    whose files Office 2016 names alike (the newer product is taken)."""
    by_stem: dict[str, set[str]] = {}
    for product in catalog().products:
        for channel in (Channel.KMS_CLIENT, Channel.MAK):
            stem = licence_file_stem(product.sku(channel).license_name)
            by_stem.setdefault(stem, set()).add(product.id)
            found = catalog().licence_file(f"{stem}-ppd.xrm-ms".lower())
            assert found is not None and found.channel is channel, stem
            expected = product.id.replace("2013", "2016")
            assert found.product.id == expected, (stem, found.product.id)
        host = licence_file_stem(product.sku(Channel.KMS_HOST).license_name)
        found = catalog().licence_file(f"{host}-ul.xrm-ms")
        assert found is not None and found.channel is Channel.KMS_HOST
    shared = {stem: ids for stem, ids in by_stem.items() if len(ids) > 1}
    assert shared, "Office 2013 and 2016 name their licence files alike"
    for ids in shared.values():
        assert len(ids) == 2 and {i[-4:] for i in ids} == {"2013", "2016"}, ids
    assert {"ProPlus2021VL_KMS_Client_AE", "ProPlusVL_MAK"} <= set(by_stem)


def test_slmgr_ilc_is_the_twin(ospp: Ospp, licences: Path):
    ospp("fleet", "create", "t", "2", "--product", "ProPlus2019")
    path = str(licences / "ProPlus2021VL_MAK_AE-pl.xrm-ms")
    ran = ospp("slmgr", "/ilc", path, "t1")
    assert ran.code == 0 and ran.out == f"License file {path} installed successfully.\n\n"
    assert ospp(f"/inslic:{path}", "t2").code == 0

    def licences_of(machine: str) -> list[str]:
        products = ospp("dstatusall", machine, "--json").data()["products"]
        return sorted(p["sku_id"] for p in products)

    assert licences_of("t1") == licences_of("t2")
    assert len(licences_of("t1")) == 4  # ProPlus 2019's and 2021's, KMS client and MAK


def test_a_mistyped_name_gets_the_names_it_is_close_to(ospp: Ospp, licences: Path):
    typo = licences / "ProPlus2021VL_KMS_Clent_AE-ul-oob.xrm-ms"
    typo.write_text("<x/>")
    ran = ospp(f"/inslic:{typo}", "--json").json()["error"]
    assert ran["code"] == "0x80070057" and "is not the licence file" in ran["message"]
    assert ran["hint"] == "Did you mean ProPlus2021VL_KMS_Client_AE-ul-oob.xrm-ms?"


def test_offices_shared_licence_files_are_taken_with_nothing_to_do(ospp: Ospp, licences: Path):
    """client-issuance-*, pkeyconfig-*: licence files of no one product, which some
    conversion scripts install too; a script that does goes on."""
    ospp.install("ProPlus2019")
    before = dump(ospp)
    for name in ("client-issuance-root.xrm-ms", "pkeyconfig-office.xrm-ms"):
        (licences / name).write_text("<x/>")
        ran = ospp(f"/inslic:{licences / name}", "--json").data()
        assert (ran["product_id"], ran["installed"]) == (None, [])
        assert ospp("slmgr", "/ilc", str(licences / name)).code == 0
    assert dump(ospp) == before
    denied = ospp("inslic", str(licences / "pkeyconfig-office.xrm-ms"), env={"OSPP_USER": "a"})
    assert denied.code == 1 and "0xC004F025" in denied.out
