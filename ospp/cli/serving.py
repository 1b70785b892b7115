"""Options the long-running servers (``kms serve``, ``center serve``) share."""

from __future__ import annotations

import click

from ospp.core.logs import FORMATS, LEVELS

HTTP_OPTION = click.option(
    "--http",
    metavar="HOST:PORT",
    default=None,
    help="Also serve a status page (/), Prometheus metrics (/metrics) and a health check "
    "(/healthz) over HTTP here, e.g. 127.0.0.1:8080; port 0 picks one. Off by default.",
)
LOG_LEVEL_OPTION = click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="The least severe operational log message shown (on stderr).",
)
LOG_FORMAT_OPTION = click.option(
    "--log-format",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="auto",
    show_default=True,
    help="Operational log format: human, json (one object per line), or auto (human on a "
    "terminal, json otherwise).",
)


def log_level(chosen: str) -> str:
    """The operational log level: ``--log-level``, or warning under ``ospp --quiet``."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("log_level") is click.core.ParameterSource.DEFAULT and bool(
        ctx.find_root().params.get("quiet")
    ):
        return "warning"
    return chosen
