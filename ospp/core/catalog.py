"""The product catalog: Office volume products, their SKUs per channel, and their GVLKs.

The catalog's data is ``ospp/core/catalog_data.py``, read once on first use. GVLKs and
KMS-client SKU ids are the public values; MAK and KMS-host SKU ids are simulated.
"""

from __future__ import annotations

import enum
import functools

from ospp.core.record import Record


class Channel(enum.StrEnum):
    """How a licence is activated."""

    KMS_CLIENT = "kms-client"  # volume licence activated by a KMS host (GVLK installed)
    MAK = "mak"  # Multiple Activation Key, activated with the authority online or by phone
    KMS_HOST = "kms-host"  # the licence a KMS host key (CSVLK) installs on the host itself


APP_OFFICE_2010 = "59a52881-a989-479d-af46-f275c6370663"
APP_OFFICE_2013_PLUS = "0ff1ce15-a989-479d-af46-f275c6370663"


class Sku(Record):
    """One licence of a product: a product in one channel."""

    product: Product
    channel: Channel
    sku_id: str
    simulated: bool
    license_name: str
    license_description: str


class Product(Record):
    id: str  # short id such as ProPlus2021
    index: int  # stable small number, encoded in simulated product keys
    display_name: str
    year: int
    office_version: int  # 14, 15, 16, 19, 21, 24 as in "Office 16, ..."
    application_id: str  # KMS application group
    gvlk: str

    def sku(self, channel: Channel) -> Sku:
        return catalog().sku_of(self, channel)


class Catalog:
    def __init__(self, raw: dict[str, object]) -> None:
        self.kms_threshold = int(raw["kms_threshold"])  # type: ignore[call-overload]
        self.products: list[Product] = []
        self._skus: dict[tuple[str, Channel], Sku] = {}
        self._by_sku_id: dict[str, Sku] = {}
        self._by_id: dict[str, Product] = {}
        self._by_index: dict[int, Product] = {}
        self._by_gvlk: dict[str, Product] = {}
        for entry in raw["products"]:  # type: ignore[attr-defined]
            product = Product(
                id=entry["id"],
                index=entry["index"],
                display_name=entry["display_name"],
                year=entry["year"],
                office_version=entry["office_version"],
                application_id=entry["application_id"],
                gvlk=entry["gvlk"],
            )
            self.products.append(product)
            self._by_id[product.id.lower()] = product
            self._by_index[product.index] = product
            self._by_gvlk[product.gvlk] = product
            for name, chan in entry["channels"].items():
                sku = Sku(
                    product=product,
                    channel=Channel(name),
                    sku_id=chan["sku_id"],
                    simulated=chan["simulated_sku_id"],
                    license_name=chan["license_name"],
                    license_description=chan["license_description"],
                )
                self._skus[(product.id, sku.channel)] = sku
                self._by_sku_id[sku.sku_id.lower()] = sku

    def product(self, product_id: str) -> Product | None:
        """The product with this short id (case-insensitive), or None."""
        return self._by_id.get(product_id.lower())

    def by_index(self, index: int) -> Product | None:
        return self._by_index.get(index)

    def by_gvlk(self, key: str) -> Product | None:
        return self._by_gvlk.get(key)

    def sku_of(self, product: Product, channel: Channel) -> Sku:
        return self._skus[(product.id, channel)]

    def sku(self, sku_id: str) -> Sku | None:
        return self._by_sku_id.get(sku_id.strip("{}").lower())

    def gvlks(self) -> dict[str, Product]:
        return dict(self._by_gvlk)

    def licence_file(self, file_name: str) -> Sku | None:
        """The licence whose file ``file_name`` is, by the name Office gives it: the edition
        in a licence name, less its ``Office16`` prefix, then a part and ``.xrm-ms``
        (``ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms``, ``ProPlusVL_MAK-pl.xrm-ms``), in any
        case. Office 2013 and 2016 name their files alike: the newer product's is taken."""
        name = file_name.lower()
        if not name.endswith(LICENCE_FILE_SUFFIX):
            return None
        for product in self.products:  # newest first
            for channel in Channel:
                sku = self.sku_of(product, channel)
                stem = licence_file_stem(sku.license_name)
                if stem and name.startswith(stem.lower() + "-"):
                    return sku
        return None


LICENCE_FILE_SUFFIX = ".xrm-ms"


def licence_file_stem(license_name: str) -> str:
    """``ProPlus2021VL_KMS_Client_AE`` for "Office 21, Office21ProPlus2021VL_KMS_Client_AE
    edition": how Office's licence files for that licence begin."""
    edition = license_name.partition(", ")[2].removesuffix(" edition")
    return edition.removeprefix("Office").lstrip("0123456789")


@functools.cache
def catalog() -> Catalog:
    """The embedded catalog, built once per process."""
    from ospp.core.catalog_data import CATALOG

    return Catalog(CATALOG)
