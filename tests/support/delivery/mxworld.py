"""A small Internet on loopback for direct-delivery tests.

- a private /24 inside 127.0.0.0/8 (chosen at random, so concurrent test runs
  do not collide on port 25 or 53);
- a real DNS server (dnsmasq, Debian ``dnsmasq-base``) on ``<net>.1`` port 53
  serving MX, A, AAAA, TXT and null-MX records for ``.test`` domains;
- a real HTTPS server (trustme certificate) serving MTA-STS policies;
- real SMTP servers (aiosmtpd) started by each test on ``<net>.N`` port 25.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

from support.dkimcheck import ALGORITHMS, dnsmasq_record, make_key
from support.servers import RecordingServer

#: starts a real aiosmtpd on ``<net>.N`` port 25 (the ``start`` fixture)
StartServer = Callable[..., RecordingServer]

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

#: host number in the private /24 for each role
DNS, DOWN, BUSY, OK, OK2, TLS_GOOD, TLS_BAD, HTTPS = 1, 2, 3, 4, 5, 6, 7, 10


def _bindable(address: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def pick_network() -> str | None:
    """A 127.x.y prefix whose addresses we can bind port 25/53/443 on; None if not root."""
    rng = random.Random()
    for _ in range(20):
        net = f"127.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
        hosts = (DNS, DOWN, BUSY, OK, OK2, TLS_GOOD, TLS_BAD, HTTPS)
        ports = {DNS: 53, HTTPS: 443}
        if all(_bindable(f"{net}.{h}", ports.get(h, 25)) for h in hosts):
            return net
        if not _bindable(f"{net}.{DNS}", 1023):  # not allowed to bind low ports at all
            return None
    return None


def zone(net: str) -> list[str]:
    """The dnsmasq records of the test domains."""
    a = lambda n: f"{net}.{n}"  # noqa: E731
    return [
        # failover.test: one host down, one answering 421, one accepting.
        "mx-host=failover.test,down.failover.test,10",
        "mx-host=failover.test,busy.failover.test,20",
        "mx-host=failover.test,ok.failover.test,30",
        f"host-record=down.failover.test,{a(DOWN)},::1",
        f"host-record=busy.failover.test,{a(BUSY)}",
        f"host-record=ok.failover.test,{a(OK)}",
        # other.test: a second domain on its own server.
        "mx-host=other.test,mx.other.test,10",
        f"host-record=mx.other.test,{a(OK2)}",
        # implicit.test: no MX, an address: its own mail exchanger.
        f"host-record=implicit.test,{a(OK)}",
        # xn--bcher-kva.test (bücher.test): an IDNA domain.
        "mx-host=xn--bcher-kva.test,ok.failover.test,10",
        # nullmx.test: RFC 7505 "0 .".
        "mx-host=nullmx.test,.,0",
        # deadhost.test: its only MX has no address.
        "mx-host=deadhost.test,nowhere.deadhost.test,10",
        # dual.test: its only MX has an IPv6 address (nothing listens) and the OK one;
        # v6only.test: its only MX has an IPv6 address alone.
        "mx-host=dual.test,mx.dual.test,10",
        f"host-record=mx.dual.test,{a(OK)},::1",
        "mx-host=v6only.test,mx.v6only.test,10",
        "host-record=mx.v6only.test,::1",
        # MTA-STS domains: the policy host, the TXT record, the MX.
        *_sts_domain(net, "sts-good", TLS_GOOD),
        *_sts_domain(net, "sts-unlisted", OK),
        *_sts_domain(net, "sts-badcert", TLS_BAD),
        *_sts_domain(net, "sts-testing", OK),
        *_sts_domain(net, "sts-plain", OK),
    ]


def _sts_domain(net: str, name: str, mx_host: int) -> list[str]:
    return [
        f"mx-host={name}.test,mx.{name}.test,10",
        f"host-record=mx.{name}.test,{net}.{mx_host}",
        f"host-record=mta-sts.{name}.test,{net}.{HTTPS}",
        f'txt-record=_mta-sts.{name}.test,"v=STSv1; id=2026112801"',
    ]


POLICIES = {
    "sts-good": "version: STSv1\nmode: enforce\nmx: mx.sts-good.test\nmax_age: 86400\n",
    "sts-unlisted": "version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n",
    "sts-badcert": "version: STSv1\nmode: enforce\nmx: mx.sts-badcert.test\nmax_age: 86400\n",
    "sts-testing": "version: STSv1\r\nmode: testing\r\nmx: mx.elsewhere.test\r\nmax_age: 600\r\n",
    # Enforce with a listed MX that offers no STARTTLS at all.
    "sts-plain": "version: STSv1\nmode: enforce\nmx: *.sts-plain.test\nmax_age: 86400\n",
}


class Dnsmasq:
    """dnsmasq in the foreground on ``address`` port 53, answering only from its zone."""

    def __init__(self, address: str, records: list[str], workdir: Path) -> None:
        self.address = address
        conf = workdir / "dnsmasq.conf"
        conf.write_text(
            "\n".join(
                [
                    "port=53",
                    f"listen-address={address}",
                    "bind-interfaces",
                    "no-resolv",
                    "no-hosts",
                    "no-negcache",
                    "local=/test/",  # NXDOMAIN for unknown .test names, REFUSED elsewhere
                    *records,
                    "",
                ]
            )
        )
        self.proc = subprocess.Popen(
            [DNSMASQ, "--keep-in-foreground", f"--conf-file={conf}", "--pid-file=", "--user=root"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import dns.message
        import dns.query

        query = dns.message.make_query("implicit.test", "A")
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                dns.query.udp(query, self.address, timeout=0.2)
                return
            except (OSError, dns.exception.Timeout):
                time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class PolicyServer:
    """HTTPS on ``address`` port 443 serving each domain's MTA-STS policy; counts fetches."""

    def __init__(self, address: str, cert: trustme.LeafCert) -> None:
        self.policies: dict[str, tuple[int, str, str]] = {}
        self.fetches: Counter[str] = Counter()
        self.peers: list[str] = []  # the address each fetch came from
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0]
                outer.fetches[host] += 1
                outer.peers.append(self.client_address[0])
                status, kind, body = outer.policies.get(host, (404, "text/plain", "not here"))
                if self.path != "/.well-known/mta-sts.txt":
                    status = 404
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((address, 443), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, domain: str, body: str, status: int = 200, kind: str = "text/plain") -> None:
        self.policies[f"mta-sts.{domain}"] = (status, kind, body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MXWorld:
    """The loopback Internet: DNS, the policy server, a CA and its certificates."""

    def __init__(self, net: str) -> None:
        self.net = net
        self.workdir = Path(tempfile.mkdtemp(prefix="smtpmail-mxworld-"))
        self.ca = trustme.CA()
        self.ca_file = str(self.workdir / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        #: DKIM keys of sender.test, one per algorithm, published in the zone.
        self.dkim = {
            a: make_key(self.workdir, a, "sender.test", a.split("-")[0]) for a in ALGORITHMS
        }
        records = [*zone(net), *(dnsmasq_record(k) for k in self.dkim.values())]
        self.dns = Dnsmasq(self.ip(DNS), records, self.workdir)
        sts_names = [f"mta-sts.{d}.test" for d in POLICIES]
        try:
            self.https = PolicyServer(self.ip(HTTPS), self.ca.issue_cert(*sts_names))
        except BaseException:
            self.dns.stop()
            raise
        self.reset_policies()

    def reset_policies(self) -> None:
        self.https.policies.clear()
        self.https.fetches.clear()
        self.https.peers.clear()
        for name, body in POLICIES.items():
            self.https.serve(f"{name}.test", body)

    def ip(self, host: int) -> str:
        return f"{self.net}.{host}"

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        return [(self.ip(DNS), 53)]

    def server_tls(self, *names: str) -> ssl.SSLContext:
        """A server context with a certificate for ``names`` from the test CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(ctx)
        return ctx

    def close(self) -> None:
        self.https.stop()
        self.dns.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def usable() -> str | None:
    """Why the world cannot be built here, or None when it can."""
    if not os.path.exists(DNSMASQ):
        return "dnsmasq is not installed: scripts/test.sh installs it (Debian dnsmasq-base)"
    if os.geteuid() != 0:
        return "needs root to listen on port 25/53/443 of loopback addresses"
    return None
