"""Office licence files (.xrm-ms): ``ospp /inslic:PATH`` and ``slmgr /ilc PATH``.

Volume conversion scripts install a product's licences from the files Office ships
(``root\\Licenses16\\ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms``, ...) before its GVLK. ospp knows
the licence by the file's name (:meth:`ospp.core.catalog.Catalog.licence_file`) and checks
only that the file is there and readable: what it holds is XrML signed by Microsoft, which a
simulation neither has nor checks, so empty files of those names rehearse the same script.
The licences come without a key, on a machine that exists already. Office's licence files
that belong to no product (``client-issuance-*``, ``pkeyconfig-*``), which some scripts
install too, are taken with nothing to do.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping

from ospp.core.catalog import LICENCE_FILE_SUFFIX, Channel, Product, Sku, catalog, licence_file_stem
from ospp.core.errors import E_SKU_NOT_FOUND, LicensingError, UsageError
from ospp.machine.client import check_operation, install_licences, open_machine
from ospp.machine.store import MachineStore

EXAMPLE = "root/Licenses16/ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms"
SHARED = ("client-issuance-", "pkeyconfig-")  # Office's licence files of no one product


def licence_file_product(path: str) -> Product | None:
    """The volume product whose Office licence file ``path`` is (None for one of Office's
    shared licence files): a readable regular file ending in .xrm-ms, named as Office names
    them. Anything else is refused, naming why."""
    if not path.strip():
        raise UsageError("no licence file was given", f"Give its path, such as {EXAMPLE}.")
    if not path.lower().endswith(LICENCE_FILE_SUFFIX):
        raise UsageError(
            "Unrecognized file. Office licenses have an .xrm-ms file extension.",
            f"Give the path of one, such as {EXAMPLE}.",
        )
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read below
            raise UsageError(f"the licence file {path} is not a regular file")
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise UsageError(
            f"File not found: {path}",
            "Check the path; a relative one starts where ospp runs, not in Office's folder.",
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot read the licence file {path}: {exc.strerror or exc}",
            "Check that it is a file you may read.",
        ) from exc
    name = re.split(r"[\\/]", path)[-1]  # a Windows path's name too
    if name.lower().startswith(SHARED):
        return None
    sku = catalog().licence_file(name)
    if sku is None:
        raise UsageError(
            f"{name!r} is not the licence file of a volume product in ospp's catalog",
            _unknown_hint(name),
        )
    if sku.channel is Channel.KMS_HOST:
        raise LicensingError(
            E_SKU_NOT_FOUND,
            f"{name!r} is the licence of a KMS host for {sku.product.id}; an Office client "
            "has no place for it",
            "A KMS host's licence comes with its key: ospp kms install-key KEY.",
        )
    return sku.product


def _unknown_hint(name: str) -> str:
    """The licence names closest to ``name``'s, or how a name is made."""
    import difflib

    stem = name.split("-", 1)[0]
    stems = {
        licence_file_stem(product.sku(channel).license_name)
        for product in catalog().products
        for channel in (Channel.KMS_CLIENT, Channel.MAK)
    }
    close = difflib.get_close_matches(stem, sorted(stems), n=1, cutoff=0.75)
    if close:
        return f"Did you mean {close[0]}-{name.split('-', 1)[-1]}?"
    return (
        "A licence file's name is a licence name as /dstatus shows it, less its OfficeNN "
        "prefix, then a part: ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms, ProPlusVL_MAK-pl.xrm-ms "
        "(Office 2016). ospp products lists the products."
    )


def install_licence_file(
    path: str, computer: str | None, environ: Mapping[str, str] = os.environ
) -> tuple[MachineStore, Product | None, list[Sku]]:
    """Install the licences of the product ``path`` is a licence file of, on ``computer``:
    the machine, the product (None for a shared licence file, which changes nothing) and the
    licences added (none when they were there already)."""
    product = licence_file_product(path)
    store = open_machine(computer, environ)
    if product is None:
        check_operation(store, environ)  # installing it is a change, even with nothing to do
        return store, None, []
    return store, product, install_licences(store, product, environ)
