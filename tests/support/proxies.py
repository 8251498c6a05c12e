"""Real proxy servers for the proxy tests, each started on a free loopback port.

- :func:`microsocks`: SOCKS 5 with a user name and password (microsocks -u -P).
- :func:`dante`: SOCKS 4 and SOCKS 5 without authentication (Dante's danted),
  refusing every connection to :data:`REFUSED_HOST` by a rule.
- :func:`tinyproxy`: HTTP CONNECT, with Basic credentials, and ``ConnectPort``
  rules to refuse a destination.
- :func:`openssh`: SOCKS 4A (and 5) as OpenSSH's ``ssh -D`` dynamic forwarding
  serves it, through an sshd started here: Dante answers SOCKS 4A requests with
  "rejected", and OpenSSH is the packaged server that implements 4A.

A missing program is a failure, never a skip (scripts/test.sh installs them).
:meth:`ProxyProcess.kill` kills the whole process group, so a proxy dies with
the connections its children or threads were relaying.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from support.servers import free_port

USER = "proxy-üser"  # non-ASCII on purpose: RFC 1929 names are octets, sent as UTF-8
PASSWORD = "pr0xy pa$$word:with@signs"
#: tinyproxy's configuration takes only letters, digits, "-", "." and "_" in credentials.
HTTP_USER, HTTP_PASSWORD = "http-user", "http-s3cret.pass_word"
#: Dante refuses every connection to this address (a SOCKS 5 "not allowed by ruleset").
REFUSED_HOST = "127.0.0.2"
#: The address each proxy connects to the server from (the server sees it as the peer:
#: the proof that a connection came through that proxy, not straight from the client).
EGRESS = {"dante": "127.0.0.5", "microsocks": "127.0.0.6", "tinyproxy": "127.0.0.7"}


def program(name: str, *where: str) -> str:
    """The path of ``name``; an AssertionError (a failure, not a skip) when it is missing."""
    found = shutil.which(name, path=os.pathsep.join([*where, os.environ.get("PATH", "")]))
    assert found, f"{name} is not installed: run scripts/test.sh (it installs the proxies)"
    return found


def quote(text: str) -> str:
    """Percent-encode a user name or password for a proxy URL."""
    from urllib.parse import quote as percent

    return percent(text, safe="")


class ProxyProcess:
    """One proxy server process (group) listening on 127.0.0.1:``port``."""

    def __init__(self, scheme: str, port: int, argv: list[str], log: Path) -> None:
        self.scheme = scheme
        self.port = port
        self.argv = argv
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: list[ProxyProcess] = []  # what it needs running (openssh's sshd)

    def url(self, user: str | None = None, password: str | None = None, scheme: str = "") -> str:
        auth = ""
        if user is not None:
            auth = quote(user) + ("" if password is None else ":" + quote(password)) + "@"
        return f"{scheme or self.scheme}://{auth}127.0.0.1:{self.port}"

    def start(self) -> ProxyProcess:
        for other in self.extra:
            other.start()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes it all
            )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        """Until the port accepts a connection (a readiness wait, not an assertion on time)."""
        assert self.process is not None
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.argv[0]} exited ({self.process.returncode}): {self.log.read_text()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.argv[0]} does not listen: {self.log.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the proxy's whole process group and wait for it: its
        connections die with it (the peers see a reset or the end of the stream)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        self.kill()
        for other in self.extra:
            other.stop()


@contextlib.contextmanager
def running(proxy: ProxyProcess) -> Iterator[ProxyProcess]:
    try:
        yield proxy.start()
    finally:
        proxy.stop()


def microsocks(tmp: Path, user: str | None = USER, password: str | None = PASSWORD) -> ProxyProcess:
    """SOCKS 5; with ``user``, only username/password authentication is accepted."""
    port = free_port()
    argv = [program("microsocks"), "-i", "127.0.0.1", "-p", str(port), "-b", EGRESS["microsocks"]]
    if user is not None:
        argv += ["-u", user, "-P", password or ""]
    return ProxyProcess("socks5h", port, argv, tmp / f"microsocks-{port}.log")


def dante(tmp: Path) -> ProxyProcess:
    """Dante: SOCKS 4 and 5 (no authentication); connections to REFUSED_HOST are refused."""
    port = free_port()
    conf = tmp / f"danted-{port}.conf"
    unprivileged = "nobody" if os.geteuid() == 0 else getpass.getuser()
    conf.write_text(
        f"""logoutput: stderr
internal: 127.0.0.1 port = {port}
external: {EGRESS["dante"]}
clientmethod: none
socksmethod: none
user.privileged: {getpass.getuser()}
user.unprivileged: {unprivileged}
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
socks block {{
  from: 0.0.0.0/0 to: {REFUSED_HOST}/32
}}
socks pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
  command: connect
}}
"""
    )
    argv = [program("danted", "/usr/sbin"), "-f", str(conf), "-N", "1"]
    return ProxyProcess("socks5", port, argv, tmp / f"danted-{port}.log")


def tinyproxy(
    tmp: Path,
    user: str | None = None,
    password: str | None = None,
    connect_ports: tuple[int, ...] = (),
) -> ProxyProcess:
    """tinyproxy for HTTP CONNECT; ``connect_ports`` (when given) are the only
    ports it tunnels to (the others get 403), ``user`` its Basic credentials."""
    port = free_port()
    conf = tmp / f"tinyproxy-{port}.conf"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        f"Bind {EGRESS['tinyproxy']}",
        "Timeout 600",
        "MaxClients 100",
        "Allow 127.0.0.1",
        "LogLevel Info",
        "DisableViaHeader Yes",
        *(f"ConnectPort {p}" for p in connect_ports),
    ]
    if os.geteuid() == 0:
        lines += ["User nobody", "Group nogroup"]
    if user is not None:
        lines.append(f"BasicAuth {user} {password}")
    conf.write_text("\n".join(lines) + "\n")
    argv = [program("tinyproxy", "/usr/sbin", "/usr/bin"), "-d", "-c", str(conf)]
    return ProxyProcess("http", port, argv, tmp / f"tinyproxy-{port}.log")


def openssh(tmp: Path) -> ProxyProcess:
    """``ssh -D``'s SOCKS 4/4A/5 server, logged in to an sshd started here."""
    keygen = program("ssh-keygen")
    home = tmp / f"ssh-{free_port()}"
    home.mkdir(mode=0o700)
    for name in ("host_key", "user_key"):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True
        )
    (home / "authorized_keys").write_bytes((home / "user_key.pub").read_bytes())
    sshd_port = free_port()
    config = home / "sshd_config"
    config.write_text(
        f"""ListenAddress 127.0.0.1:{sshd_port}
HostKey {home / "host_key"}
AuthorizedKeysFile {home / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
StrictModes no
UsePAM no
PidFile none
"""
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation directory
    sshd = ProxyProcess(
        "ssh",
        sshd_port,
        [program("sshd", "/usr/sbin"), "-D", "-e", "-f", str(config)],
        home / "sshd.log",
    )
    port = free_port()
    argv = [
        program("ssh"),
        "-F",
        "/dev/null",  # no user or system ssh_config: only these options
        "-N",
        "-D",
        f"127.0.0.1:{port}",
        "-p",
        str(sshd_port),
        "-i",
        str(home / "user_key"),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        f"UserKnownHostsFile={home / 'known_hosts'}",
        "-o",
        "ExitOnForwardFailure=yes",
        f"{getpass.getuser()}@127.0.0.1",
    ]
    proxy = ProxyProcess("socks4a", port, argv, home / "ssh.log")
    proxy.extra.append(sshd)
    return proxy
