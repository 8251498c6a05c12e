"""Direct delivery (smtpmail.deliver) on the loopback Internet of tests/support/delivery/mxworld.py.

Run as root (ports 25, 53, 443 on a private 127.x.y.0/24):
``PYTHONPATH=src python bench/direct_delivery.py``. It measures the cost of one
delivery (MX + AAAA + A lookups against dnsmasq, connect, EHLO, transaction)
and what per-domain parallelism buys when each MX takes 100 ms to answer.
Kept apart from bench/run.py, which compares smtpmail with its peers.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import smtpmail  # noqa: E402
from support.delivery.mxworld import OK, OK2, MXWorld, pick_network  # noqa: E402
from support.servers import Recorder, RecordingServer  # noqa: E402

MESSAGE = b"Subject: bench\r\n\r\n" + (b"x" * 70 + b"\r\n") * 14
DOMAINS = ["a@failover.test", "b@other.test", "c@implicit.test", "d@bücher.test"]


class SlowMX(Recorder):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.1)  # a distant MX's round trips
        return await super().handle_DATA(server, session, envelope)


def main(count: int = 200) -> None:
    net = pick_network()
    if net is None:
        sys.exit("needs root and a free loopback /24")
    world = MXWorld(net)
    kw: dict[str, Any] = {"nameservers": world.nameservers, "mta_sts": False}
    try:
        with RecordingServer(world.ip(OK2), 25):
            smtpmail.deliver(MESSAGE, "s@bench.test", ["x@other.test"], **kw)
            t = time.perf_counter()
            for _ in range(count):
                assert smtpmail.deliver(MESSAGE, "s@bench.test", ["x@other.test"], **kw).ok
            dt = time.perf_counter() - t
            print(f"deliver(), one at a time: {count / dt:.0f}/s ({dt / count * 1e3:.1f} ms each)")

            async def concurrently() -> list[smtpmail.DeliveryReport]:
                return await asyncio.gather(
                    *(
                        smtpmail.deliver_async(MESSAGE, "s@bench.test", ["x@other.test"], **kw)
                        for _ in range(count)
                    )
                )

            t = time.perf_counter()
            assert all(r.ok for r in asyncio.run(concurrently()))
            print(f"deliver_async(), {count} at once: {count / (time.perf_counter() - t):.0f}/s")
        with (
            RecordingServer(world.ip(OK), 25, handler=SlowMX()),
            RecordingServer(world.ip(OK2), 25, handler=SlowMX()),
        ):
            for limit in (1, 4):
                t = time.perf_counter()
                assert smtpmail.deliver(
                    MESSAGE, "s@bench.test", DOMAINS, max_connections=limit, **kw
                ).ok
                ms = (time.perf_counter() - t) * 1e3
                print(f"4 domains, 100 ms MX, max_connections={limit}: {ms:.0f} ms")
    finally:
        world.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
