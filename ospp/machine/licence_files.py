"""Office licence files (.xrm-ms): ``ospp /inslic:PATH`` and ``slmgr /ilc PATH``.

Volume conversion scripts install a product's licences from the files Office ships
(``root\\Licenses16\\ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms``, ...) before its GVLK. ospp knows
the licence by the file's name (:meth:`ospp.core.catalog.Catalog.licence_file`) and checks
only that the file is there and readable: what it holds is XrML signed by Microsoft, which a
simulation neither has nor checks, so empty files of those names rehearse the same script.
The licences come without a key, on a machine that exists already.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping

from ospp.core.catalog import LICENCE_FILE_SUFFIX, Channel, Product, Sku, catalog
from ospp.core.errors import E_SKU_NOT_FOUND, LicensingError, UsageError
from ospp.machine.client import install_licences, open_machine
from ospp.machine.store import MachineStore

EXAMPLE = "root/Licenses16/ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms"


def licence_file_product(path: str) -> Product:
    """The volume product whose Office licence file ``path`` is: a readable regular file
    ending in .xrm-ms, named as Office names them. Anything else is refused, naming why."""
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
        raise UsageError(f"File not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read the licence file {path}: {exc.strerror or exc}") from exc
    name = re.split(r"[\\/]", path)[-1]  # a Windows path's name too
    sku = catalog().licence_file(name)
    if sku is None:
        raise UsageError(
            f"{name!r} is not the licence file of a volume product in ospp's catalog",
            "ospp knows a licence file by its name, as Office gives it: "
            "ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms, ProPlusVL_MAK-pl.xrm-ms (Office 2016). "
            "See the products with: ospp products",
        )
    if sku.channel is Channel.KMS_HOST:
        raise LicensingError(
            E_SKU_NOT_FOUND,
            f"{name!r} is the licence of a KMS host for {sku.product.id}; an Office client "
            "has no place for it",
            "A KMS host's licence comes with its key: ospp kms install-key KEY.",
        )
    return sku.product


def install_licence_file(
    path: str, computer: str | None, environ: Mapping[str, str] = os.environ
) -> tuple[MachineStore, Product, list[Sku]]:
    """Install the licences of the product ``path`` is a licence file of, on ``computer``:
    the machine, the product and the licences added (none when they were there already)."""
    product = licence_file_product(path)
    store = open_machine(computer, environ)
    return store, product, install_licences(store, product, environ)
