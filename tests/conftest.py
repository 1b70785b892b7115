from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ospp.cli import cli
from tests import pgcluster

PRODUCT = "ProPlus2021"
GVLK_2021 = "FXYTK-NJJ8C-GB6DW-3DYQT-6F7TH"
GVLK_2016 = "XQNVK-8JYDB-WJ9W3-YJ8YR-WFG99"


_VALIDATORS: dict[str, Any] = {}


def check_json(out: str) -> dict[str, Any] | None:
    """``out`` as the --json envelope, checked against the schema of its command with every
    object closed (a field missing from the definition fails); None when ``out`` is not one."""
    try:
        whole = json.loads(out)
    except ValueError:
        return None
    if not isinstance(whole, dict) or "schema" not in whole:
        return None
    if os.environ.get("OSPP_RECORD_JSON"):  # collecting outputs to write definitions from
        with open(os.environ["OSPP_RECORD_JSON"], "a", encoding="utf-8") as f:
            f.write(json.dumps(whole) + "\n")
        return whole
    command = str(whole.get("command"))
    if command not in _VALIDATORS:
        import jsonschema  # type: ignore[import-untyped]

        from ospp.cli.reports import schemas
        from ospp.cli.schema import any_command, strict

        known = schemas()
        assert command in known or command == "", f"no schema for {command!r}"
        # A command line that names no known command: the envelope with a failure, no data.
        schema = known[command] if command else strict(any_command())
        _VALIDATORS[command] = jsonschema.Draft202012Validator(strict(schema))
    if not command:
        assert whole["data"] is None and whole["error"] is not None, whole
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _VALIDATORS[command].iter_errors(whole)
    ]
    assert not problems, f"{command}: output does not match docs/schema: {problems}"
    return whole


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The whole JSON envelope (``ok``, ``command``, ``error``...)."""
        return json.loads(self.out)

    def data(self) -> Any:
        """What the command reports, without the envelope around it."""
        payload = json.loads(self.out)
        return payload["data"] if "schema" in payload else payload


class Ospp:
    """Runs ospp against one isolated home, in-process (CliRunner) or as a real subprocess."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            "OSPP_HOME": str(home / "client"),
            "OSPP_CENTER_HOME": str(home / "center"),
            "OSPP_KMS_HOME": str(home / "kms"),
            "OSPP_CENTER_DB": "",  # SQLite unless a test asks for PostgreSQL
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
        check_json(result.stdout)
        return Ran(result.exit_code, result.stdout, result.stderr)

    def install(self, product: str = PRODUCT, *machines: str) -> None:
        """Install ``product`` on each machine (this one when none is named): keys are
        installed only for installed products, as on real Office."""
        for machine in machines or ("",):
            ran = self("install-product", product, *([machine] if machine else []))
            assert ran.code == 0, ran.out

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
        check_json(done.stdout)
        return Ran(done.returncode, done.stdout, done.stderr)

    def store_file(self, machine: str = "localhost") -> Path:
        return self.home / "client" / "machines" / machine / "licenses.db"


@pytest.fixture
def ospp(tmp_path: Path) -> Ospp:
    return Ospp(tmp_path)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.Cluster]:
    """PostgreSQL for the tests: OSPP_TEST_PG_URL, or a throwaway cluster; else a skip (a
    failure when OSPP_TEST_PG_REQUIRED is set, as in CI)."""
    try:
        cluster = pgcluster.start()
    except pgcluster.Unavailable as exc:
        if os.environ.get("OSPP_TEST_PG_REQUIRED"):  # CI: a missing server is a failure
            pytest.fail(f"PostgreSQL unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: pgcluster.Cluster) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    url = pg_cluster.create_database()
    try:
        yield url
    finally:
        pg_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def center(request: pytest.FixtureRequest, tmp_path: Path) -> Ospp:
    """An isolated home whose authority keeps its records in SQLite, then in PostgreSQL."""
    ospp = Ospp(tmp_path)
    if request.param == "postgresql":
        ospp.env["OSPP_CENTER_DB"] = request.getfixturevalue("pg_url")
    return ospp


def interrupt_when(ospp: Ospp, args: tuple[str, ...], ready: Callable[[], bool]) -> Ran:
    """Run ospp with ``args`` and press Ctrl+C (SIGINT) once ``ready()`` holds."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "ospp", *args],
        env={**os.environ, **ospp.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, "finished before it could be interrupted"
            assert time.monotonic() < deadline, "never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Ran(proc.returncode, out, err)
