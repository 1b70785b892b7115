"""A real BIND 9 on 127.0.0.1 (a free high port) for the discovery and publishing tests, plus
nameservers that misbehave on purpose (SERVFAIL, silence)."""

from __future__ import annotations

import shutil
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

KEY_NAME = "ospp-test-key"
# What tsig-keygen makes and ospp publishes with (ospp.dns.publish.TSIG_ALGORITHMS).
TSIG_ALGORITHMS = (
    "hmac-md5",
    "hmac-sha1",
    "hmac-sha224",
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
)
ZONE = "test.example"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port")


class Bind:
    """named with one dynamic zone (TSIG-signed updates only) and query logging."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        keygen = subprocess.run(
            ["tsig-keygen", "-a", "hmac-sha256", KEY_NAME],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.keyfile = self.dir / "tsig.key"
        self.keyfile.write_text(keygen)
        self.secret = keygen.split('secret "')[1].split('"')[0]
        # one more key per algorithm tsig-keygen makes, each allowed to update the zone
        self.keyfiles = {"hmac-sha256": self.keyfile}
        for algorithm in TSIG_ALGORITHMS:
            if algorithm != "hmac-sha256":
                path = self.dir / f"tsig-{algorithm}.key"
                path.write_text(
                    subprocess.run(
                        ["tsig-keygen", "-a", algorithm, f"{KEY_NAME}-{algorithm}"],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                )
                self.keyfiles[algorithm] = path
        includes = "".join(f'include "{path}";\n' for path in self.keyfiles.values())
        grants = "".join(
            f"grant {KEY_NAME}{'' if a == 'hmac-sha256' else '-' + a} zonesub ANY; "
            for a in self.keyfiles
        )
        (self.dir / f"{ZONE}.zone").write_text(
            f"$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n"
            f"@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n"
        )
        self.querylog = self.dir / "queries.log"
        (self.dir / "named.conf").write_text(f"""
{includes}
options {{
    directory "{self.dir}";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    pid-file none;
    querylog yes;
    notify no;
}};
logging {{
    channel q {{ file "{self.querylog}"; print-time no; }};
    category queries {{ q; }};
    category default {{ default_stderr; }};
}};
zone "{ZONE}" {{
    type primary;
    file "{ZONE}.zone";
    update-policy {{ {grants}}};
    check-names ignore;  // a nameserver on the Internet may serve any name: tests add some
}};
""")
        self.proc = subprocess.Popen(
            [shutil.which("named") or "named", "-f", "-c", str(self.dir / "named.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._wait()

    def _wait(self) -> None:
        import dns.message
        import dns.query

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"named exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            try:
                q = dns.message.make_query(ZONE, "SOA")
                if dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.5).answer:
                    return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("named did not come up")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def update(self, *changes: tuple[str, str, str, int, str], zone: str = ZONE) -> None:
        """Apply ('add'|'delete', name, type, ttl, rdata) changes, signed with the test key."""
        import dns.query
        import dns.rcode
        import dns.tsigkeyring
        import dns.update

        keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", self.secret)})
        upd = dns.update.UpdateMessage(zone, keyring=keyring)
        for op, name, rtype, ttl, rdata in changes:
            if op == "add":
                upd.add(name, ttl, rtype, rdata)
            elif rdata:
                upd.delete(name, rtype, rdata)
            else:
                upd.delete(name, rtype)
        response = dns.query.tcp(upd, "127.0.0.1", port=self.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())

    def srv_queries(self, name: str) -> int:
        if not self.querylog.exists():
            return 0
        text = self.querylog.read_text().lower()
        return sum(1 for line in text.splitlines() if f"{name.lower()} in srv" in line)

    def srv_queries_settled(self, name: str, at_least: int = 1) -> int:
        """srv_queries once at least ``at_least`` are logged and the log has stopped growing
        for 0.3 s (BIND writes its query log a little after it answers); 5 s at most."""
        deadline = time.monotonic() + 5
        last, since = self.srv_queries(name), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.srv_queries(name)
            if now != last:
                last, since = now, time.monotonic()
            elif last >= at_least and time.monotonic() - since >= 0.3:
                break
        return last

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _ServfailHandler(socketserver.BaseRequestHandler):
    """A nameserver that answers every query with SERVFAIL."""

    def handle(self) -> None:
        import dns.message
        import dns.rcode

        data, sock = self.request
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.SERVFAIL)
        sock.sendto(reply.to_wire(), self.client_address)


class ServfailServer:
    def __init__(self) -> None:
        self.server = socketserver.UDPServer(("127.0.0.1", 0), _ServfailHandler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """A nameserver that never answers (UDP bound, TCP listening, nothing read)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(5)

    def stop(self) -> None:
        self.udp.close()
        self.tcp.close()


class _AddressDroppingHandler(socketserver.BaseRequestHandler):
    """Passes every query on to BIND, except A and AAAA queries, which go unanswered."""

    def handle(self) -> None:
        import dns.message
        import dns.query
        import dns.rdatatype

        data, sock = self.request
        query = dns.message.from_wire(data)
        if query.question and query.question[0].rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            return
        server: SilentAddresses = self.server.owner  # type: ignore[attr-defined]
        reply = dns.query.tcp(query, "127.0.0.1", port=server.upstream, timeout=5)
        sock.sendto(reply.to_wire(), self.client_address)


class _InFrontOfBind:
    """A server on 127.0.0.1 that passes DNS messages on to BIND, in a thread of its own; its
    handler reaches it as ``self.server.owner``."""

    def __init__(self, bind: Bind, server: socketserver.BaseServer) -> None:
        self.upstream = bind.port
        self.server = server
        self.server.owner = self  # type: ignore[attr-defined]
        self.port = int(self.server.server_address[1])  # type: ignore[index]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentAddresses(_InFrontOfBind):
    """A nameserver in front of BIND that answers SRV queries and never A or AAAA: every SRV
    target takes its resolver's whole timeout (UDP only; answers come whole over UDP)."""

    def __init__(self, bind: Bind) -> None:
        server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _AddressDroppingHandler)
        super().__init__(bind, server)


class _SlowTcpHandler(socketserver.BaseRequestHandler):
    """Passes each DNS-over-TCP message on to BIND and its answer back, late."""

    def handle(self) -> None:
        server: SlowAnswers = self.server.owner  # type: ignore[attr-defined]
        conn: socket.socket = self.request
        with socket.create_connection(("127.0.0.1", server.upstream), timeout=10) as up:
            while True:
                query = _read_frame(conn)
                if query is None:
                    return
                up.sendall(query)
                answer = _read_frame(up)
                if answer is None:
                    return
                time.sleep(server.delay)
                conn.sendall(answer)


def _read_frame(sock: socket.socket) -> bytes | None:
    """One length-prefixed DNS message over TCP (its two length bytes included)."""
    data = b""
    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
        chunk = sock.recv(65537)
        if not chunk:
            return None
        data += chunk
    return data


class SlowAnswers(_InFrontOfBind):
    """A DNS server over TCP in front of BIND that answers every message ``delay`` seconds
    late: within a client's timeout, so each query is slow and none fails."""

    def __init__(self, bind: Bind, delay: float) -> None:
        self.delay = delay
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SlowTcpHandler)
        server.daemon_threads = True
        super().__init__(bind, server)
