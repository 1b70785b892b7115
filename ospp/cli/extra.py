"""Commands beyond ospp.vbs: the product catalog and simulated product installs; and
ospp.vbs's /inslic, which installs a product's licences (here, not beside /dstatus in
``ospp.cli.verbs``, whose start-up it would cost)."""

from __future__ import annotations

from pathlib import Path

import click

from ospp.cli import complete
from ospp.cli.base import COMPUTER_ARGUMENT, JSON_OPTION, Result, reports
from ospp.cli.slash import verb
from ospp.core.catalog import Channel, Product, Sku, catalog
from ospp.machine import client
from ospp.machine.store import MachineStore


@click.command("products")
@JSON_OPTION
@reports
def products() -> Result:
    """List the product catalog: short ids, GVLKs and SKU ids."""
    rows = []
    lines = []
    for p in catalog().products:
        kms = p.sku(Channel.KMS_CLIENT)
        rows.append(
            {
                "product_id": p.id,
                "name": p.display_name,
                "gvlk": p.gvlk,
                "application_id": p.application_id,
                "skus": {c.value: p.sku(c).sku_id for c in Channel},
            }
        )
        lines.append(f"{p.id:<15} {p.gvlk}  {kms.sku_id}  {p.display_name}")
    return Result(lines, {"products": rows}, banners=False)


@click.command("install-product")
@click.argument("product", shell_complete=complete.products)
@COMPUTER_ARGUMENT
@JSON_OPTION
@reports
def install_product(product: str, computer: str | None) -> Result:
    """Install a volume product: its licences and its GVLK; grace starts now.

    Creates the simulated machine COMPUTERNAME if it does not exist (as fleet create and
    fleet import do for many)."""
    store = client.open_for_install(computer, product)
    added = client.install_product(store, product)
    found = client.find_product(product)
    line = (
        f"<{found.display_name} installed: {len(added)} licence(s), KMS client key "
        f"{found.gvlk[-5:]}>"
        if added
        else f"<{found.display_name} was already installed>"
    )
    return Result(
        [line],
        {"machine": store.name, "product_id": found.id, "installed": [s.sku_id for s in added]},
    )


@verb(
    "inslic",
    slash_value="argument",
    keep_case=True,
    params=[click.argument("path", metavar="PATH", type=click.Path())],
)
@reports
def inslic(path: str, computer: str | None) -> Result:
    """Install a product's licences from an Office licence file (.xrm-ms), without a key.

    The product is the one the file's name gives, as Office names them
    (ProPlus2021VL_KMS_Client_AE-ppd.xrm-ms); the file must be there to be read."""
    from ospp.machine.licence_files import install_licence_file

    store, product, added = install_licence_file(path, computer)
    return Result(
        [f"Installing Office license: {path}", "Office license installed successfully."],
        licence_file_data(store, path, product, added),
    )


def licence_file_data(
    store: MachineStore, path: str, product: Product | None, added: list[Sku]
) -> dict[str, object]:
    """What ``inslic`` and ``slmgr ilc`` report in JSON."""
    return {
        "machine": store.name,
        "licence_file": path,
        "product_id": product.id if product else None,
        "installed": [s.sku_id for s in added],
    }


@click.command("machines")
@JSON_OPTION
@reports
def machines() -> Result:
    """List the simulated machines (each one a store in OSPP_HOME), so scripts can check."""
    from ospp.core.paths import ospp_home
    from ospp.machine.service import machine_names

    names = machine_names(ospp_home())
    return Result(names or ["<No simulated machines>"], {"machines": names}, banners=False)


@click.command("demo")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's state in this directory instead of a temporary one.",
)
def demo(keep: Path | None) -> None:
    """Run a guided tour on a throw-away store: keys, status, grace, errors."""
    from ospp.cli.demo import run_demo

    raise SystemExit(run_demo(click.echo, keep))


@click.command("help")
@click.argument("words", nargs=-1, metavar="[COMMAND]...", shell_complete=complete.commands)
@click.pass_context
def help_(ctx: click.Context, words: tuple[str, ...]) -> None:
    """Show the help of ospp, or of a command (ospp help kms serve, ospp help /dstatus)."""
    root = ctx.find_root()
    command: click.Command = root.command
    current = root
    path = [root.info_name or "ospp"]
    for word in words:
        name = word.lstrip("/").split(":")[0].lower()
        found = command.get_command(current, name) if isinstance(command, click.Group) else None
        if found is None:
            raise click.UsageError(f"'{' '.join(path)}' has no command {word!r}", ctx)
        path.append(name)
        current = click.Context(found, info_name=name, parent=current)
        command = found
    click.echo(command.get_help(current))


COMMANDS = [products, install_product, inslic, machines, demo, help_]
