from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ospp.cli import cli

PRODUCT = "ProPlus2021"
GVLK_2021 = "FXYTK-NJJ8C-GB6DW-3DYQT-6F7TH"
GVLK_2016 = "XQNVK-8JYDB-WJ9W3-YJ8YR-WFG99"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Ospp:
    """Runs ospp against one isolated home, in-process (CliRunner) or as a real subprocess."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            "OSPP_HOME": str(home / "client"),
            "OSPP_CENTER_HOME": str(home / "center"),
            "OSPP_KMS_HOME": str(home / "kms"),
            # Never the machine's own resolver: discovery in tests stays on loopback.
            "OSPP_RESOLV_CONF": str(self._resolv_conf(home)),
        }

    @staticmethod
    def _resolv_conf(home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        path = home / "resolv.conf"
        path.write_text("nameserver 127.0.0.1\n")
        return path

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> Ran:
        runner = CliRunner()
        merged = {**self.env, **(env or {})}
        result = runner.invoke(cli, list(args), env=merged, input=input, prog_name="ospp")
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Ran(result.exit_code, result.stdout, result.stderr)

    def proc(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        input: str | None = None,
        timeout: float = 60,
    ) -> Ran:
        merged = {**os.environ, **self.env, **(env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "ospp", *args],
            env=merged,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    def store_file(self, machine: str = "localhost") -> Path:
        return self.home / "client" / "machines" / machine / "licenses.db"


@pytest.fixture
def ospp(tmp_path: Path) -> Ospp:
    return Ospp(tmp_path)
