"""The ``ospp`` command line: ospp.vbs verbs (``ospp /dstatus``) and modern commands."""

from __future__ import annotations

import click

from ospp import __version__
from ospp.cli import activate, center, dnsdiag, extra, kmshost, verbs
from ospp.cli.base import EXIT_STATUS_HELP, SlashGroup

HELP = f"""Rehearse Office volume activation on a simulated licence store.

Commands work in the ospp.vbs form (ospp /inpkey:KEY, ospp /dstatus, ospp /act) and in the
modern form (ospp inpkey KEY, ospp dstatus --json). Names are case-insensitive. A trailing
COMPUTERNAME selects another simulated machine, each with its own store.

{EXIT_STATUS_HELP}
"""


@click.group(
    cls=SlashGroup,
    help=HELP,
    context_settings={"token_normalize_func": str.lower, "help_option_names": ["--help", "-h"]},
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.version_option(__version__, prog_name="ospp")
def cli(as_json: bool) -> None:
    pass


for _command in [
    *verbs.COMMANDS,
    *activate.COMMANDS,
    *extra.COMMANDS,
    *center.COMMANDS,
    *kmshost.COMMANDS,
    *dnsdiag.COMMANDS,
]:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="ospp")
