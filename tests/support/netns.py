"""Network namespaces for tests that need separate "machines" (Linux, root).

:class:`Network` makes a hub namespace holding a bridge (``HUB_ADDRESS``) and,
for each machine, a namespace joined to that bridge by a veth pair. Every
address lives inside a namespace the test made; the root namespace gets
none, so the tests cannot reach or disturb a real network. Processes start in
a namespace with :meth:`Network.popen` (``ip netns exec``, which execs: the
pid returned is the program's own, so SIGKILL reaches it). :meth:`cut` and
:meth:`mend` take a machine's link down and up. :meth:`close` deletes the
namespaces (the veths go with them); it kills nothing: the caller stops what
it started.

The test process itself stays in the root namespace; it reaches servers in
the hub through Unix sockets or files, which namespaces do not separate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

__all__ = ["HUB_ADDRESS", "Network", "require_netns"]

#: The /24 of the test's namespaces: it exists only inside them.
SUBNET = "10.213.77"
HUB_ADDRESS = f"{SUBNET}.1"


def require_netns() -> None:
    """Fail (never skip) where namespaces cannot be made: the soak must run in CI."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise AssertionError("network namespaces need root and iproute2 (run scripts/test.sh)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Network:
    """A hub namespace with a bridge, and ``machines`` namespaces wired to it."""

    def __init__(self, machines: int, *, prefix: str | None = None) -> None:
        require_netns()
        self.prefix = prefix or f"sm{os.getpid()}"
        self.hub = f"{self.prefix}-hub"
        self.machines = [f"{self.prefix}-m{i}" for i in range(machines)]
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def address(self, machine: int) -> str:
        return f"{SUBNET}.{10 + machine}"

    def _add(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        self._add(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i, name in enumerate(self.machines):
            self._add(name)
            # Both ends made straight into their namespaces: nothing in the root one.
            _ip(
                "-n",
                self.hub,
                "link",
                "add",
                f"h{i}",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                name,
            )
            _ip("-n", self.hub, "link", "set", f"h{i}", "master", "br0", "up")
            _ip("-n", name, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")

    def popen(self, namespace: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``namespace``."""
        return subprocess.Popen(["ip", "netns", "exec", namespace, *argv], **kwargs)

    def run(self, namespace: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def cut(self, machine: int) -> None:
        """Take the machine's link down: its packets go nowhere, as a pulled cable."""
        _ip("-n", self.machines[machine], "link", "set", "eth0", "down")

    def mend(self, machine: int) -> None:
        _ip("-n", self.machines[machine], "link", "set", "eth0", "up")

    def close(self) -> None:
        for name in reversed(self._made):
            subprocess.run(
                ["ip", "netns", "del", name], check=False, capture_output=True, timeout=30
            )
        self._made.clear()
