"""What the ospp.vbs commands do to a simulated machine. The CLI calls these and prints."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ospp.core.catalog import Product, Sku, catalog
from ospp.core.clock import Clock, clock_from_env
from ospp.core.errors import (
    E_KEY_NOT_AVAILABLE,
    E_KMS_REFUSED,
    E_NEEDS_ADMIN,
    E_NOT_VOLUME,
    E_REARM_LIMIT,
    E_SKU_NOT_FOUND,
    N_,
    LicensingError,
    UsageError,
)
from ospp.core.paths import (
    LOCAL_MACHINE,
    StrPath,
    machine_dir,
    machine_name,
    machines_root,
    ospp_home,
    stat_if_there,
)
from ospp.machine.status import LicenceStatus, evaluate
from ospp.machine.store import MAX_REARMS, STORE_FILE, MachineStore, no_machine

if TYPE_CHECKING:
    from ospp.protocol.keys import ProductKey

_GUID = r"^\{?[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\}?$"


def open_machine(
    computer: str | None = None,
    environ: Mapping[str, str] = os.environ,
    clock: Clock | None = None,
    *,
    create: bool = False,
) -> MachineStore:
    """Open the store of a simulated machine.

    This machine (``localhost``, the default) always exists. Another one exists once a product
    has been installed on it (``create=True``: ``ospp install-product PRODUCT NAME``, ``ospp
    fleet create``). A mistyped computer name is an error, as an unreachable computer is for
    ospp.vbs, never a new machine.
    """
    name = machine_name(computer)
    home = ospp_home(environ)
    machines_root(home)  # a file in its place is reported as such, not as a missing machine
    if not create and not machine_exists(home, name):
        raise no_machine(name)
    clock = clock or clock_from_env(environ)
    return MachineStore.open(home, name, clock, create=create or name == LOCAL_MACHINE)


def machine_exists(home: StrPath, name: str) -> bool:
    """Whether ``name`` is a simulated machine under ``home`` (this one always is)."""
    if name == LOCAL_MACHINE:
        return True
    try:
        found = stat_if_there(os.path.join(machine_dir(home, name), STORE_FILE))
    except OSError:  # cannot be looked at (a directory that may not be entered): opening says
        return True
    return found is not None and stat.S_ISREG(found.st_mode)


def open_for_install(
    computer: str | None, product_id: str, environ: Mapping[str, str] = os.environ
) -> MachineStore:
    """The machine to install ``product_id`` on, created if need be, but only once the
    product is known and the user may: a refused install leaves no machine behind."""
    find_product(product_id)
    name = machine_name(computer)
    user = current_user(environ)
    if user is not None and not machine_exists(ospp_home(environ), name):
        raise LicensingError(
            E_NEEDS_ADMIN,
            N_(
                "standard user {user} may not create the simulated machine {name}",
                user=repr(user),
                name=repr(name),
            ),
            N_("Run it as an administrator (unset OSPP_USER)."),
        )
    return open_machine(computer, environ, create=True)


def find_product(product_id: str) -> Product:
    product = catalog().product(product_id)
    if product is None:
        known = ", ".join(p.id for p in catalog().products)
        raise UsageError(f"no product {product_id!r} in the catalog", f"Known products: {known}.")
    return product


# -- who may change licensing (/puserops, /duserops and OSPP_USER) -----------------------------


def current_user(environ: Mapping[str, str] = os.environ) -> str | None:
    """The standard (non-administrator) user OSPP_USER names; None for an administrator
    (OSPP_USER unset, or set to Administrator, also as DOMAIN\\Administrator)."""
    if "OSPP_USER" not in environ:
        return None
    name = environ["OSPP_USER"].strip()
    if not name:
        raise UsageError(
            "OSPP_USER is set but empty",
            "Unset it to run as an administrator, or name a standard user: OSPP_USER=alice.",
        )
    account = name.rpartition("\\")[2].strip()  # WS3\Administrator is WS3's Administrator
    if not account:
        raise UsageError(
            f"OSPP_USER={name!r} names a domain but no account",
            "Name the account too, as in OSPP_USER=CORP\\alice.",
        )
    return None if account.lower() == "administrator" else name


def require_admin(what: str, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse ``what`` to a standard user, whatever /puserops allows."""
    user = current_user(environ)
    if user is not None:
        raise LicensingError(
            E_NEEDS_ADMIN,
            f"{what} needs an administrator, and OSPP_USER={user!r} is a standard user",
            "Run it as an administrator (unset OSPP_USER).",
        )


def check_operation(store: MachineStore, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a licensing change to a standard user unless this machine allows it."""
    user = current_user(environ)
    if user is None or store.settings()["user_operations"] == "1":
        return
    raise LicensingError(
        E_NEEDS_ADMIN,
        N_(
            "standard user {user} may not change the licensing of {machine}: "
            "non-administrators' operations are denied there",
            user=repr(user),
            machine=store.name,
        ),
        N_("An administrator can allow them with /puserops, or run as one (unset OSPP_USER)."),
    )


def set_user_operations(
    store: MachineStore, allow: bool, environ: Mapping[str, str] = os.environ
) -> None:
    require_admin("/puserops" if allow else "/duserops", environ)
    _save(store, check=False, user_operations="1" if allow else "0")


def user_operations_allowed(store: MachineStore) -> bool:
    return store.settings()["user_operations"] == "1"


# -- the simulated licensing service (/osppsvcauto, /osppsvcrestart) ---------------------------

SERVICE_NAME = "Office Software Protection Platform"


def service_state(store: MachineStore) -> dict[str, object]:
    settings = store.settings()
    started = settings["osppsvc_started_at"]
    return {
        "name": SERVICE_NAME,
        "start_mode": settings["osppsvc_start_mode"],
        "state": "running" if started else "stopped",
        "started_at": started or None,
    }


def set_service_auto(store: MachineStore, environ: Mapping[str, str] = os.environ) -> bool:
    """Set the service to start automatically; False when it already did."""
    require_admin("/osppsvcauto", environ)
    if store.settings()["osppsvc_start_mode"] == "auto":
        return False
    _save(store, check=False, osppsvc_start_mode="auto")
    return True


def restart_service(store: MachineStore, environ: Mapping[str, str] = os.environ) -> None:
    """Stop the service if it runs, and start it."""
    from ospp.core.clock import iso

    require_admin("/osppsvcrestart", environ)
    _save(store, check=False, osppsvc_started_at=iso(store.clock.now()))


# -- keys and licences -------------------------------------------------------------------------


def install_product(store: MachineStore, product_id: str) -> list[Sku]:
    """Simulate installing a volume product: its licences plus its pre-installed GVLK."""
    return _install(store, find_product(product_id), with_gvlk=True)


def install_licences(
    store: MachineStore, product: Product, environ: Mapping[str, str] = os.environ
) -> list[Sku]:
    """/inslic: the licences of ``product``, without a key, as installing its licence files
    gives them; those already installed stay as they are."""
    return _install(store, product, with_gvlk=False, environ=environ)


def _install(
    store: MachineStore,
    product: Product,
    *,
    with_gvlk: bool,
    environ: Mapping[str, str] = os.environ,
) -> list[Sku]:
    """The licences ``product`` does not have yet on this machine (returned), and its GVLK
    ``with_gvlk`` unless it holds a key already."""
    from ospp.protocol import keys

    check_operation(store, environ)
    key = keys.parse(product.gvlk) if with_gvlk else None
    with store.write() as conn:
        added = store.ensure_product(conn, product)
        if key is not None and not any(
            lic.product_key for lic in store.licences(conn) if lic.sku.product is product
        ):
            store.install_key(conn, key)
        if added or key is not None:
            store.bump(conn)
    return added


def check_key_fits(store: MachineStore, key: ProductKey) -> None:
    """Refuse a key this machine has no licence for, as Office does (0xC004F069): the licences
    come with the product, so its product must be installed; and a KMS host key (CSVLK) belongs
    on a KMS host, which an Office client is not."""
    from ospp.core.catalog import Channel

    if key.channel is Channel.KMS_HOST:
        raise LicensingError(
            E_SKU_NOT_FOUND,
            f"the key ending {key.last5} is a KMS host key (CSVLK); {store.name} is an Office "
            "client and has no KMS host licence to install it on",
            "Install it on the KMS host: ospp kms install-key KEY.",
        )
    if not any(lic.sku.product is key.product for lic in store.licences()):
        where = "" if store.name == LOCAL_MACHINE else f" {store.name}"
        raise LicensingError(
            E_SKU_NOT_FOUND,
            f"{key.product.id} is not installed on {store.name}, so it has no licence for a "
            f"key of {key.product.id}",
            f"Install the product first: ospp install-product {key.product.id}{where}",
        )


def install_key(store: MachineStore, raw: str) -> ProductKey:
    """Install a key for a product installed on this machine."""
    from ospp.protocol import keys

    key = keys.parse(raw)
    check_operation(store)
    check_key_fits(store, key)
    with store.write() as conn:
        store.install_key(conn, key)
        store.bump(conn)
    return key


def uninstall_key(store: MachineStore, last5: str) -> list[Sku]:
    check_operation(store)
    with store.write() as conn:
        removed = store.uninstall_key(conn, last5)
        if not removed:
            raise LicensingError(
                E_KEY_NOT_AVAILABLE,
                f"no installed product key ends in {last5.upper()}",
                "Run /dstatus to see the last 5 characters of each installed key.",
            )
        store.bump(conn)
    return removed


def statuses(
    store: MachineStore,
    include_unkeyed: bool = False,
    environ: Mapping[str, str] = os.environ,
    verify: bool = False,
) -> list[LicenceStatus]:
    """The state of each licence. A stored activation whose seal matches is trusted as it was
    verified when it arrived; ``verify`` checks every signature again regardless of the seal
    (the seal key sits beside the store, so whoever can write the store can also re-seal it)."""
    now = store.clock.now()
    found = store.licences()
    check = None
    if any(lic.activation for lic in found):
        from ospp.machine.checks import full_checker, make_checker

        check = full_checker(store, environ) if verify else make_checker(store, environ)
    return [
        evaluate(lic, now, check) for lic in found if include_unkeyed or lic.product_key is not None
    ]


def rearm(
    store: MachineStore, sku_id: str | None = None, environ: Mapping[str, str] = os.environ
) -> list[Sku]:
    """Restart the grace period (of every licence not licensed, as /dstatus judges it, or of
    one SKU), using one of the machine's rearms; none when no licence needs it."""
    if sku_id is not None and not re.match(_GUID, sku_id):
        raise UsageError(f"SKU id {sku_id!r} is not a GUID", "Copy the SKU ID line of /dstatus.")
    check_operation(store)
    from ospp.machine.checks import make_checker

    check = make_checker(store, environ)
    with store.write() as conn:
        # As the licensing service: once the rearms are used, a rearm is refused whatever
        # the licences' state.
        used = int(store.settings(conn)["rearms_used"])
        if used >= MAX_REARMS:
            raise LicensingError(
                E_REARM_LIMIT,
                f"this machine has been rearmed {used} times, the most allowed is {MAX_REARMS}",
                "Activate the products instead (/act, or phone activation with /dinstid).",
            )
        now = store.clock.now()
        targets = []
        for lic in store.licences(conn):
            if sku_id is not None:
                if lic.sku.sku_id == sku_id.strip("{}").lower():
                    targets.append(lic.sku)
            elif evaluate(lic, now, check).status != "LICENSED":
                targets.append(lic.sku)
        if sku_id is not None and not targets:
            raise LicensingError(
                E_SKU_NOT_FOUND,
                f"no licence with SKU id {sku_id} is installed",
                "Run /dstatusall to list the installed SKU ids.",
            )
        if not targets:  # nothing to rearm: the machine keeps its rearms for when one is
            return targets
        for sku in targets:
            store.restart_grace(conn, sku)
        store.set_setting(conn, "rearms_used", str(used + 1))
        store.bump(conn)
    return targets


def cmid(store: MachineStore) -> str:
    return store.settings()["cmid"]


# -- KMS client settings (/sethst, /setprt, /remhst, /cachst, /skms-domain, /ckms-domain) ------


def _save(store: MachineStore, check: bool = True, **values: str) -> None:
    if check:
        check_operation(store)
    with store.write() as conn:
        for name, value in values.items():
            store.set_setting(conn, name, value)
        store.bump(conn)


def set_kms_host(store: MachineStore, text: str) -> None:
    from ospp.core.endpoint import parse_host

    current = store.kms()
    endpoint = parse_host(text, current.port, "KMS host")
    _save(store, kms_host=endpoint.host, kms_port=str(endpoint.port), kms_cached_host="")


def set_kms_port(store: MachineStore, text: str) -> None:
    from ospp.core.endpoint import parse_port

    _save(store, kms_port=str(parse_port(text, "KMS port")))


def remove_kms_host(store: MachineStore) -> None:
    _save(store, kms_host="", kms_port="1688", kms_cached_host="")


def set_kms_caching(store: MachineStore, text: str) -> None:
    value = text.strip().upper()
    if value not in ("TRUE", "FALSE"):
        raise UsageError(f"/cachst takes TRUE or FALSE, not {text!r}")
    _save(store, kms_cache="1" if value == "TRUE" else "0", kms_cached_host="")


def set_kms_domain(store: MachineStore, text: str) -> None:
    from ospp.core.hostname import valid_domain

    domain = text.strip().rstrip(".").lower()
    if not valid_domain(domain):
        raise UsageError(f"/skms-domain value {text!r} is not a DNS domain name")
    check_kms_domain(domain, text)
    _save(store, kms_domain=domain, kms_cached_host="")


def check_kms_domain(domain: str, text: str) -> None:
    """Refuse a domain (a host name: ``valid_domain``) whose SRV name would be longer than a
    DNS name may be: no record can be published there."""
    from ospp.dns.discovery import SERVICE, searchable

    if not searchable(domain):
        raise UsageError(
            f"/skms-domain value {text!r} is too long: {SERVICE}.{domain} would be over the "
            "255 bytes a DNS name may have",
            "Use the domain that holds the KMS SRV record (at most 241 characters).",
        )


def clear_kms_domain(store: MachineStore) -> None:
    _save(store, kms_domain="", kms_cached_host="")


KMS_POLICIES = ("any", "online-only")


def set_kms_policy(store: MachineStore, text: str) -> None:
    """Which KMS hosts this machine believes: any certified host, or only hosts certified
    online (not by phone, whose certificate binds the host key more weakly: docs/PHONE.md)."""
    value = text.strip().lower()
    if value not in KMS_POLICIES:
        raise UsageError(f"/kms-policy takes any or online-only, not {text!r}")
    _save(store, kms_policy=value)


def set_actype(store: MachineStore, text: str) -> None:
    if text not in ("0", "1", "2", "3"):
        raise UsageError(
            f"/actype takes 0 (all), 1 (Active Directory), 2 (KMS) or 3 (token), not {text!r}"
        )
    if text in ("1", "3"):
        raise LicensingError(
            E_NOT_VOLUME if text == "1" else E_KMS_REFUSED,
            "Active Directory and token-based activation are not supported by ospp",
            "Use /actype:0 (all) or /actype:2 (KMS).",
        )
    _save(store, actype=text)
