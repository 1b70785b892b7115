"""The ``ospp`` command line: ospp.vbs verbs (``ospp /dstatus``) and modern commands.

Command modules are imported only when one of their commands runs (or help lists them all),
so ``ospp /dstatus`` does not pay for the KMS host, the authority or DNS diagnostics.
"""

from __future__ import annotations

import gc

# Importing is most of what a short command like `ospp /dstatus` costs, and the objects it
# creates (modules, classes, functions) live as long as the process: none is ever garbage.
# The cyclic collector, which allocations set off again and again during an import, would
# only traverse them, so it is paused while the CLI is imported (README, "Start-up"), and
# what was imported is then moved out of its generations (gc.freeze), where no later
# collection traverses it again. Whatever else the process held at that moment is frozen
# too (an in-process caller's garbage cycles are then never collected), once per process. A
# long-running command, a server included, runs with the collector on as usual.
_collecting = gc.isenabled()
gc.disable()
try:
    import importlib
    import os
    import sys
    from types import ModuleType
    from typing import NoReturn

    import click

    from ospp import __version__
    from ospp.cli.base import EXIT_STATUS_HELP, console, root_flags
    from ospp.cli.slash import SlashGroup
finally:
    gc.freeze()
    if _collecting:
        gc.enable()

# Set by script(): this process is the ospp command, and a command's module is frozen too.
_command_process = False

HELP = f"""Rehearse Office volume activation on a simulated licence store.

Commands work in the ospp.vbs form (ospp /inpkey:KEY, ospp /dstatus, ospp /act) and in the
modern form (ospp inpkey KEY, ospp dstatus --json). Names are case-insensitive. A trailing
COMPUTERNAME selects another simulated machine, each with its own store.

{EXIT_STATUS_HELP}
"""

# Which module defines each command (a test checks this against the modules' COMMANDS).
MODULES: dict[str, tuple[str, ...]] = {
    "ospp.cli.verbs": (
        "inpkey",
        "unpkey",
        "dstatus",
        "dstatusall",
        "ddescr",
        "dcmid",
        "rearm",
        "sethst",
        "setprt",
        "remhst",
        "cachst",
        "actype",
        "skms-domain",
        "ckms-domain",
        "kms-policy",
    ),
    "ospp.cli.activate": ("act", "dinstid", "actcid", "dhistoryacterr", "dhistorykms"),
    "ospp.cli.admin": (
        "puserops",
        "duserops",
        "osppsvcauto",
        "osppsvcrestart",
        "version",
        "dtokils",
        "rtokil",
        "stokflag",
        "ctokflag",
        "dtokcerts",
        "tokact",
    ),
    "ospp.cli.extra": ("products", "install-product", "inslic", "machines", "demo", "help"),
    "ospp.cli.center": ("center", "trust", "hardware"),
    "ospp.cli.kmshost": ("kms",),
    "ospp.cli.service": ("service",),
    "ospp.cli.dnsdiag": ("dnsdiag",),
    "ospp.cli.slmgr": ("slmgr",),
    "ospp.cli.clock": ("clock",),
    "ospp.cli.fleet": ("fleet",),
    "ospp.cli.wizard": ("wizard",),
}
_MODULE_OF = {name: module for module, names in MODULES.items() for name in names}


def _import(name: str) -> ModuleType:
    """A command's module, imported with the collector paused as the CLI itself is (above),
    and frozen in the ospp command (not where ospp.cli is called in-process, as by tests:
    freezing would keep their garbage too)."""
    if name in sys.modules:
        return sys.modules[name]
    collecting = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        if _command_process:
            gc.freeze()
        if collecting:
            gc.enable()


class LazySlashGroup(SlashGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_MODULE_OF)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _MODULE_OF:
            module = _import(_MODULE_OF[cmd_name])
            for command in module.COMMANDS:
                self.add_command(command)
        return self.commands.get(cmd_name)


@click.group(
    cls=LazySlashGroup,
    help=HELP,
    context_settings={"token_normalize_func": str.lower, "help_option_names": ["--help", "-h"]},
)
@root_flags("a command", "; servers log only warnings and errors")
@click.version_option(__version__, prog_name="ospp")
def cli(as_json: bool, quiet: bool) -> None:
    pass


def main() -> None:
    if "_OSPP_COMPLETE" in os.environ:  # the shell asks for completions (completions/)
        from ospp.cli.shells import register

        register()
    cli(prog_name="ospp")


def script() -> NoReturn:
    """The ``ospp`` console script: :func:`main`, ended quickly."""
    global _command_process
    _command_process = True
    console(main)
