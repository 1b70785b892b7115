"""Helpers for tests that run a real KMS host on 127.0.0.1 (port 0) as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ospp.core.background import start_server
from tests.conftest import Ospp

PROPLUS_2021_SKU = "fbdb3e18-a8ef-4fb3-9183-dffd60bd0984"
APP = "0ff1ce15-a989-479d-af46-f275c6370663"


def raw_request(cmid: str | None = None, **over: Any) -> dict[str, Any]:
    """A KMS activation request as a client sends it, for ProPlus 2021 with a fresh CMID and
    nonce (``Connection.call`` adds ``"v"``; pass ``v=1`` for raw frames)."""
    req = {
        "op": "kms-activate",
        "app_id": APP,
        "sku_id": PROPLUS_2021_SKU,
        "cmid": cmid or str(uuid.uuid4()),
        "nonce": uuid.uuid4().hex,
        "client_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "license_status": "OOB_GRACE",
        "workstation": "load",
    }
    req.update(over)
    return req


class Host:
    """``ospp kms serve`` in its own process, sharing the test's homes."""

    def __init__(
        self,
        ospp: Ospp,
        listen: str = "127.0.0.1:0",
        now: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.ospp = ospp
        self.listen = listen
        self.extra = extra
        self.log = ospp.home / "kms-requests.log"
        self.proc: subprocess.Popen[str] | None = None
        self.stderr_lines: list[str] = []
        self.port = 0
        self.start(now)

    def start(self, now: str | None = None) -> None:
        env = {**os.environ, **self.ospp.env}
        env.pop("OSPP_NOW", None)
        if now:
            env["OSPP_NOW"] = now
        listen = self.listen if not self.port else self.listen.rsplit(":", 1)[0] + f":{self.port}"
        args = ["kms", "serve", "--listen", listen, "--log", str(self.log), *self.extra]
        self.proc, self.port = start_server(args, env, subprocess.PIPE)

    @property
    def address(self) -> str:
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=15)
        if self.proc.stderr is not None:  # the operational log of the run that just ended
            self.stderr_lines = self.proc.stderr.read().splitlines()
            self.proc.stderr.close()
        self.proc = None
        return code

    def restart(self, now: str | None = None) -> None:
        self.stop()
        self.start(now)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def ipv6_host(ospp: Ospp) -> Host:
    """An activated host on [::1], or the test is skipped where the machine has no IPv6."""
    import socket

    import pytest

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    make_host(ospp)
    return Host(ospp, listen="[::1]:0")


def make_host(ospp: Ospp, product: str = "ProPlus2021", activate: bool = True) -> None:
    """Issue a KMS host key from the test's authority, install it and (optionally) activate."""
    key = ospp(
        "center", "issue-key", "--product", product, "--channel", "kms-host", "--json"
    ).data()["key"]
    assert ospp("kms", "install-key", key).code == 0
    if activate:
        ran = ospp("kms", "activate")
        assert ran.code == 0, ran.out


def client(
    ospp: Ospp, machine: str, host: Host, product: str = "ProPlus2021", now: str | None = None
) -> None:
    env = {"OSPP_NOW": now} if now else None
    assert ospp("install-product", product, machine, env=env).code == 0
    assert ospp(f"/sethst:{host.address}", machine).code == 0


def kill_all(hosts: list[Host]) -> None:
    for h in hosts:
        if h.alive():
            h.stop(signal.SIGKILL)


def path_of(ospp: Ospp) -> Path:
    return ospp.home / "kms" / "kms.db"


def certified_key(authority: Any, key: str) -> tuple[Any, dict[str, Any]]:
    """A fresh host signing key and the certificate ``authority`` grants it for the KMS host
    key ``key``: what a host (or whoever stole its key) holds."""
    from ospp.protocol.crypto import HostKey, b64

    signer = HostKey(HostKey.generate())
    granted = authority.activate(
        {
            "key": key,
            "cmid": str(uuid.uuid4()),
            "hardware": "00" * 5,
            "nonce": "n",
            "host_key": b64(signer.public_raw),
        }
    )
    return signer, {"kind": "online", **granted}


def signed_answer(signer: Any, cert: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
    """A KMS answer to ``msg`` signed one by one with ``signer`` (what a rogue host sends)."""
    from ospp.core.canonical import canonical
    from ospp.protocol.crypto import b64

    body = {
        "op": "kms-activate",
        "epid": "x",
        "cmid": msg["cmid"],
        "client_time": msg["client_time"],
        "nonce": msg["nonce"],
        "sku_id": msg["sku_id"],
        "count": 50,
        "activation_interval": 120,
        "renewal_interval": 10080,
        "host_time": msg["client_time"],
    }
    return {
        "v": 1,
        "ok": True,
        **body,
        "signature": b64(signer.sign(canonical(body))),
        "certificate": cert,
    }


class ThreadedServer:
    """A server of ospp's protocol on 127.0.0.1 (port 0), run by an event loop in a thread of
    the test process: ``handle`` answers each message (a rogue host, a man in the middle)."""

    def __init__(self, handle: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        async def main() -> None:
            from ospp.protocol import serving

            self.server = await serving.start(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.serve_forever()

        self.thread = threading.Thread(target=lambda: self._run(main()), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, coro: Any) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(coro)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
