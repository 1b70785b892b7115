"""The status page in a real browser: headless Chromium renders the page of a host that has
served 25 clients; the test reads the rendered DOM and saves a screenshot in tests/artifacts/.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ospp.core.endpoint import Endpoint
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import Host, make_host, raw_request

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "Chromium is not installed (Debian package 'chromium'): status page not rendered"
    print(reason)
    pytest.skip(reason)


def browse(binary: str, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="ospp-chromium-") as profile:
        return subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                f"--user-data-dir={profile}",
                *flags,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


class Dom(HTMLParser):
    """What the test looks for in the rendered DOM: elements by class and some texts by id."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, list[dict[str, str | None]]] = {}
        self.texts: dict[str, str] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for cls in (found.get("class") or "").split():
            self.classes.setdefault(cls, []).append(found)
        if found.get("id"):
            self._open.append(str(found["id"]))
            self.texts.setdefault(str(found["id"]), "")

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("b", "span", "td", "code"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            self.texts[ident] += data


@pytest.fixture
def busy_host(ospp: Ospp) -> Iterator[tuple[Host, str]]:
    make_host(ospp)
    host = Host(ospp, extra=("--http", "127.0.0.1:0"))
    assert host.proc is not None and host.proc.stdout is not None
    base = "http://" + host.proc.stdout.readline().split()[1]
    with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
        for i in range(25):
            status = "LICENSED" if i % 3 else "OOB_GRACE"
            reply = conn.call(raw_request(workstation=f"lab-pc-{i:02d}", license_status=status))
            assert reply["ok"]
    yield host, base
    if host.alive():
        host.stop()


def test_status_page_renders_in_chromium(busy_host: tuple[Host, str]):
    binary = chromium()
    _, base = busy_host
    done = browse(binary, f"{base}/", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom()
    dom.feed(done.stdout)
    rows = dom.classes.get("client", [])
    assert len(rows) == 25
    bars = dom.classes.get("bar", [])
    assert len(bars) == 30
    assert bars[-1]["data-count"] == "25"  # today's bar: every request was answered today
    assert all(b["data-count"] == "0" for b in bars[:-1])
    counts = dom.classes.get("count", [])
    assert len(counts) == 1
    assert dom.texts["stored"].strip() == "25"
    assert dom.texts["activation"].strip() == "activated"
    assert "page 1 of 1, 25 client(s)" in dom.texts["page-info"]
    assert 'class="n current">10<' in done.stdout  # the count, capped at twice the threshold

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    done = browse(
        binary, f"{base}/", "--hide-scrollbars", "--window-size=1280,1800", f"--screenshot={shot}"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
