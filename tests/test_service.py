"""The servers as services: sd_notify, SIGHUP and logrotate, the operational log, the units."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ospp.core.background import start_server
from ospp.core.endpoint import Endpoint
from ospp.kmshost.publishing import PUBLISH_RETRY_MAX, publish_retry_delay
from ospp.protocol.wire import Connection
from tests.conftest import Ospp
from tests.kmsutil import Host, make_host, raw_request

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX sockets")


class NotifySocket:
    """A real datagram socket standing in for systemd's: collects the messages sent to it."""

    def __init__(self, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"ospp-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.env = f"@{name}"
        else:
            self.dir = tempfile.mkdtemp(prefix="ospp-n")  # short: socket paths max ~100 bytes
            path = os.path.join(self.dir, "notify")
            self.sock.bind(path)
            self.env = path
        self.messages: list[dict[str, str]] = []

    def wait_for(self, name: str, value: str | None = None, timeout: float = 15) -> dict[str, str]:
        """The first message (old or new) with ``name`` (and ``value`` in it)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if name in message and (value is None or value in message[name]):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name}={value} in {self.messages}")
            self.sock.settimeout(left)
            data = self.sock.recv(4096).decode()
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))

    def close(self) -> None:
        self.sock.close()
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def notify(request: pytest.FixtureRequest) -> Iterator[NotifySocket]:
    sock = NotifySocket(abstract=request.param)
    yield sock
    sock.close()


def test_kms_host_tells_systemd_ready_status_and_stopping(ospp: Ospp, notify: NotifySocket):
    make_host(ospp)
    env = {**os.environ, **ospp.env, "NOTIFY_SOCKET": notify.env}
    proc, port = start_server(["kms", "serve", "--listen", "127.0.0.1:0"], env, subprocess.PIPE)
    try:
        ready = notify.wait_for("READY", "1")
        assert ready["MAINPID"] == str(proc.pid)
        assert "0 requests answered" in ready["STATUS"]
        with Connection(Endpoint("127.0.0.1", port), "KMS host") as conn:
            for _ in range(3):
                assert conn.call(raw_request())["ok"]
        status = notify.wait_for("STATUS", "3 requests answered, 0 failed; current count 3")
        assert "READY" not in status
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert notify.wait_for("STOPPING", "1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kms_host_status_to_systemd_goes_on_while_the_lab_clock_is_damaged(ospp: Ospp):
    """The counts cannot be read while the lab clock file is damaged, but what the process
    counted can: STATUS= says it (without the counts), and nothing is logged as an error
    nobody handled."""
    notify = NotifySocket(abstract=False)
    make_host(ospp)
    env = {**os.environ, **ospp.env, "NOTIFY_SOCKET": notify.env}
    proc, port = start_server(
        ["kms", "serve", "--listen", "127.0.0.1:0", "--log", "none"], env, subprocess.PIPE
    )
    try:
        notify.wait_for("READY", "1")
        clock = Path(ospp.env["OSPP_HOME"]) / "clock.json"
        clock.parent.mkdir(parents=True, exist_ok=True)
        clock.write_text("{not json")
        with Connection(Endpoint("127.0.0.1", port), "KMS host") as conn:
            for _ in range(2):
                assert conn.call(raw_request())["code"] == 0x8007000D
        status = notify.wait_for("STATUS", "2 requests answered, 2 failed", timeout=15)
        assert status["STATUS"] == "2 requests answered, 2 failed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert "never retrieved" not in log and "Traceback" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def test_authority_tells_systemd_ready_and_stopping(ospp: Ospp, notify: NotifySocket):
    assert ospp("center", "init", "--name", "Lab").code == 0
    env = {**os.environ, **ospp.env, "NOTIFY_SOCKET": notify.env}
    proc, _ = start_server(["center", "serve", "--listen", "127.0.0.1:0"], env, subprocess.PIPE)
    try:
        assert "0 requests answered" in notify.wait_for("READY", "1")["STATUS"]
        proc.send_signal(signal.SIGHUP)  # systemctl reload: the authority keeps running
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        notify.wait_for("STOPPING", "1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sighup_reopens_the_request_log_after_logrotate(ospp: Ospp):
    make_host(ospp)
    host = Host(ospp)
    try:
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            conn.call(raw_request(workstation="before"))
            time.sleep(0.5)  # the log is written in batches every 0.2 s
            rotated = host.log.with_name("kms-requests.log.1")
            host.log.rename(rotated)
            assert host.proc is not None
            host.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            conn.call(raw_request(workstation="after"))
            assert host.alive()
        assert host.stop() == 0
        assert len(rotated.read_text().splitlines()) == 1
        fresh = [json.loads(line) for line in host.log.read_text().splitlines()]
        assert len(fresh) == 1 and fresh[0]["ok"] is True
    finally:
        if host.alive():
            host.stop(signal.SIGKILL)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_request_log_that_cannot_be_written_is_said_once_and_the_host_serves_and_stops(
    ospp: Ospp,
):
    """A full disk under the request log: the host answers on (the answers are in the
    store), says once that lines are dropped, and stops cleanly though its last write fails."""
    make_host(ospp)
    extra = ("--log", "/dev/full", "--log-format", "json", "--http", "127.0.0.1:0")
    host = Host(ospp, extra=extra)  # of the two --log, the last wins
    try:
        assert host.proc is not None and host.proc.stdout is not None
        http = host.proc.stdout.readline().split()[1]
        with Connection(Endpoint("127.0.0.1", host.port), "KMS host") as conn:
            for _ in range(3):  # a batch of lines is written out every 0.2 s
                for _ in range(20):
                    assert conn.call(raw_request())["ok"] is True
                time.sleep(0.5)
            with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as resp:
                metrics = resp.read().decode()
            assert "\nospp_kms_request_log_lost_lines_total 60\n" in metrics
            assert conn.call(raw_request())["ok"] is True  # its line is still unwritten
        assert host.stop() == 0
    finally:
        if host.alive():
            host.stop(signal.SIGKILL)
    records = [json.loads(line) for line in host.stderr_lines]
    dropped = [r for r in records if "cannot write the request log" in r["msg"]]
    assert len(dropped) == 1, host.stderr_lines
    assert dropped[0]["level"] == "warning" and "No space left on device" in dropped[0]["msg"]
    assert dropped[0]["lost_lines"] >= 1
    assert records[-1]["msg"] == "KMS host stopping" and records[-1]["requests"] == 61
    assert not any("Traceback" in line or "Exception" in line for line in host.stderr_lines)
    assert ospp("kms", "status", "--json").data()["requests_total"] == 61


def test_operational_log_is_json_lines_off_a_terminal(ospp: Ospp):
    make_host(ospp, activate=False)
    host = Host(ospp, extra=("--log-level", "info"))
    assert host.stop() == 0
    assert host.proc is None
    # Host keeps stderr in a pipe: read what the process wrote.
    lines = host.stderr_lines
    records = [json.loads(line) for line in lines]
    messages = [r["msg"] for r in records]
    assert messages.count("KMS host listening") == 1
    assert records[0]["listen"] == f"127.0.0.1:{host.port}" and records[0]["activated"] is False
    assert any("not activated" in m for m in messages)
    assert "KMS host stopping" in messages
    assert all(r["level"] in ("info", "warning") and r["ts"].endswith("Z") for r in records)


def test_log_level_warning_hides_info(ospp: Ospp):
    make_host(ospp)
    host = Host(ospp, extra=("--log-level", "warning", "--log-format", "json"))
    assert host.stop() == 0
    assert host.stderr_lines == []


def test_publish_retries_back_off_and_are_capped():
    day = 24 * 3600.0
    assert publish_retry_delay(0, day) == day
    delays = [publish_retry_delay(n, day) for n in range(1, 12)]
    assert delays[:4] == [60, 120, 240, 480]
    assert delays == sorted(delays) and max(delays) == PUBLISH_RETRY_MAX
    assert publish_retry_delay(5, 300.0) == 300.0  # never later than the normal interval


def test_dns_publishing_goes_on_after_a_publish_while_the_lab_clock_was_damaged(
    ospp: Ospp, tmp_path: Path
) -> None:
    """A publish made while the lab clock file is damaged cannot be recorded (said once); the
    publishing loop goes on: once the clock is repaired, changed settings are published."""

    def closed_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def last() -> str:
        return str(ospp("kms", "status", "--json").data()["dns_last_publish"])

    def wait_for(what: str, ok: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 15
        while not ok():
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    make_host(ospp)
    first, second = closed_port(), closed_port()
    where = ["--domain", "example.test", "--hostname", "kms1.example.test"]
    assert ospp("kms", "dns", "set", "--server", f"127.0.0.1:{first}", *where).code == 0
    host = Host(ospp)
    logged: list[str] = []  # the host's log as it comes, read by this thread alone
    assert host.proc is not None and host.proc.stderr is not None
    stream = host.proc.stderr
    reader = threading.Thread(target=lambda: logged.extend(stream), daemon=True)
    reader.start()
    try:
        wait_for("the host did not publish", lambda: f"127.0.0.1:{first}" in last())
        clock = Path(ospp.env["OSPP_HOME"]) / "clock.json"
        clock.parent.mkdir(parents=True, exist_ok=True)
        clock.write_text("{not json")
        # this command's own lab clock is another file: only the host's is damaged
        mine = {"OSPP_CLOCK_FILE": str(tmp_path / "own-clock.json")}
        assert ospp("kms", "dns", "set", "--ttl", "120", env=mine).code == 0
        wait_for("no publish with the clock damaged", lambda: "cannot be recorded" in str(logged))
        clock.unlink()
        assert ospp("kms", "dns", "set", "--server", f"127.0.0.1:{second}").code == 0
        wait_for("publishing stopped", lambda: f"127.0.0.1:{second}" in last())
    finally:
        host.proc.terminate()  # not host.stop(), which would read the log too
        host.proc.wait(timeout=15)
        reader.join(timeout=15)
        stream.close()
        host.proc = None
    said = [line for line in logged if "cannot be recorded" in line]
    assert len(said) == 1 and "Traceback" not in "".join(logged)


@pytest.mark.parametrize("unit", ["ospp-kms.service", "ospp-center.service"])
def test_units_pass_systemd_analyze_verify(unit: str, tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the units are not verified")
    ospp_bin = Path(sys.executable).with_name("ospp")
    text = (ROOT / "contrib" / "systemd" / unit).read_text()
    assert "ExecStart=/usr/local/bin/ospp " in text
    # Verify checks that the program exists and that man:ospp(1) resolves: point both at
    # this checkout.
    (tmp_path / unit).write_text(text.replace("/usr/local/bin/ospp", str(ospp_bin)))
    (tmp_path / "man" / "man1").mkdir(parents=True)
    shutil.copy(ROOT / "man" / "ospp.1", tmp_path / "man" / "man1" / "ospp.1")
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPATH": str(tmp_path / "man")},
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    for needed in ("Type=notify", "ProtectSystem=strict", "NoNewPrivileges=yes", "ExecReload="):
        assert needed in text


@pytest.mark.parametrize("unit", ["ospp-kms.service", "ospp-center.service"])
def test_the_set_up_a_unit_describes_can_be_followed(unit: str):
    """The commands in a unit's header run before its first start: the state directory
    exists then only if they make it (StateDirectory= makes it at the start), and the
    variables reach the command through env (sudo drops 'VAR=value' given before the
    command unless the user may SETENV)."""
    import re

    text = (ROOT / "contrib" / "systemd" / unit).read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    (state,) = re.findall(r"^StateDirectory=(\S+)$", text, re.MULTILINE)
    made = f"install -d -o ospp -g ospp -m 700 /var/lib/{state}"
    assert made in header
    assert header.index(made) < header.index("sudo -u ospp")
    assert re.findall(r"sudo -u ospp (\S+)", header) == ["env"] * header.count("sudo -u ospp")


def test_running_out_of_file_descriptors_is_logged_once_without_a_traceback(ospp: Ospp):
    resource = pytest.importorskip("resource")
    make_host(ospp)
    env = {**os.environ, **ospp.env}

    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    proc = subprocess.Popen(
        [sys.executable, "-m", "ospp", "kms", "serve", "--listen", "127.0.0.1:0", "--log", "none"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=few_fds,
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        for _ in range(80):  # twice what the host may open: accept() fails again and again
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
        time.sleep(2.5)  # asyncio retries accept() every second while out of descriptors
        for s in socks:
            s.close()
        socks.clear()
        time.sleep(1.5)
        with Connection(Endpoint("127.0.0.1", port), "KMS host") as conn:  # still serving
            assert conn.call(raw_request())["ok"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err
    records = [json.loads(line) for line in err.splitlines()]
    accept = [r for r in records if "accept" in r["msg"]]
    assert len(accept) == 1, err
    assert accept[0]["level"] == "warning" and "Too many open files" in accept[0]["msg"]


def test_log_formatters_never_print_tracebacks():
    import logging

    from ospp.core.logs import HumanFormatter, JsonFormatter, Once

    try:
        raise OSError(24, "Too many open files")
    except OSError as exc:
        record = logging.LogRecord("ospp", logging.ERROR, __file__, 1, "failed", None, (
            type(exc), exc, exc.__traceback__))  # fmt: skip
    for formatter in (JsonFormatter(), HumanFormatter()):
        text = formatter.format(record)
        assert "Traceback" not in text and "\n" not in text and "Too many open files" in text
    logger = logging.getLogger("ospp.test.once")
    seen: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addHandler(Catch())
    logger.setLevel(logging.INFO)
    once = Once(logger)
    for _ in range(5):
        once.fail("dns", "publishing failed: refused")
    once.fail("dns", "publishing failed: timeout")  # a different condition is news
    once.ok("dns", "publishing works again")
    once.ok("dns", "publishing works again")
    assert seen == [
        "publishing failed: refused",
        "publishing failed: timeout",
        "publishing works again",
    ]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


def test_the_postgresql_drivers_warnings_reach_the_log_as_one_json_line_each():
    """psycopg says a lost connection in a message of several lines; on a server it used to
    reach stderr raw, among the JSON lines of the operational log."""
    done = _python(
        "import io, logging; from ospp.core import logs; buf = io.StringIO(); "
        "logs.setup('info', 'json', buf); driver = logging.getLogger('psycopg'); "
        "driver.warning('error ignored terminating %s: the connection is lost\\n"
        "server closed the connection unexpectedly', 'pipeline'); driver.info('chatty'); "
        "print(buf.getvalue(), end='')"
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and done.stderr == "", (done.stdout, done.stderr)
    record = json.loads(lines[0])
    assert record["logger"] == "psycopg" and record["level"] == "warning"
    assert "server closed the connection unexpectedly" in record["msg"]


def test_a_command_on_postgresql_keeps_the_drivers_warnings_off_its_output():
    """A CLI command reports a lost database itself (exit 4): the driver's own warning is not
    printed raw among its lines."""
    done = _python(
        "import logging; from ospp.authority import pg_store\n"
        "try:\n    pg_store._driver()\nexcept Exception:\n    pass\n"
        "logging.getLogger('psycopg').warning('error ignored terminating: connection lost')"
    )
    assert done.stderr == "", done.stderr
