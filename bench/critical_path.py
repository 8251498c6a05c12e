"""How long a client keeps a lock-step server waiting, round trip by round trip.

Against a server without PIPELINING (aiosmtpd) every command waits for the
reply before it, so whatever a client does between reading a reply and
writing the command that reply allows, the server waits for: that work, not
the client's CPU time as a whole, is what issue 19's lock-step target
measures. This times it for each of a message's four round trips (after the
previous message's end of data: MAIL; after MAIL: RCPT; after RCPT: DATA;
after DATA's 354: the content) for smtpmail's ``Client.send_many`` and for
the bare socket loop of bench/peers.py (the floor), against
bench/lockstep_server.py. The timestamps are taken where each reads and
writes (smtpmail's stream, the floor's socket), so both pay the same for
being timed. Client and server are pinned to different CPUs, as in run.py.

    python bench/critical_path.py [--source SRC] [--count N] [--runs R]

Prints the median microseconds of each round trip, and their sum, per client.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
STEPS = ("end of data -> MAIL", "MAIL -> RCPT", "RCPT -> DATA", "354 -> content")


class _Timed:
    """Times from the end of each read to the start of the next write."""

    def __init__(self) -> None:
        self.read_at = 0
        self.gaps: list[int] = []

    def read(self) -> None:
        self.read_at = time.perf_counter_ns()

    def write(self) -> None:
        if self.read_at:
            self.gaps.append(time.perf_counter_ns() - self.read_at)
            self.read_at = 0

    def per_step(self) -> list[float]:
        """Median µs per round trip of a message (the EHLO's and QUIT's left out)."""
        gaps = self.gaps[1:-1]  # (after EHLO's reply: the first MAIL; the last: QUIT)
        return [statistics.median(gaps[i::4]) / 1000 for i in range(4)]


def _floor(port: int, count: int, message: bytes) -> list[float]:
    import peers

    timed = _Timed()

    class Socket:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def recv(self, n: int) -> bytes:
            data = self.sock.recv(n)
            timed.read()
            return data

        def sendall(self, data: bytes) -> None:
            timed.write()
            self.sock.sendall(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sock, name)

    connect = peers.socket.create_connection
    peers.socket.create_connection = lambda *a, **k: Socket(connect(*a, **k))
    try:
        peers.floor_lockstep(port, count, message)
    finally:
        peers.socket.create_connection = connect
    return timed.per_step()


def _smtpmail(port: int, count: int, message: bytes) -> list[float]:
    import peers

    from smtpmail import Client, Envelope
    from smtpmail.transport.stream import SocketStream

    timed = _Timed()
    read, write = SocketStream.read, SocketStream.write

    def timed_read(self: SocketStream, max_bytes: int, timeout: float) -> bytes:
        data = read(self, max_bytes, timeout)
        timed.read()
        return data

    def timed_write(self: SocketStream, data: bytes | memoryview, timeout: float) -> None:
        timed.write()
        write(self, data, timeout)

    SocketStream.read, SocketStream.write = timed_read, timed_write  # type: ignore[method-assign]
    try:
        envelope = Envelope(peers.SENDER, [peers.RECIPIENT])
        with Client("127.0.0.1", port) as client:
            results = client.send_many((envelope, message) for _ in range(count))
        assert all(r.ok for r in results)
    finally:
        SocketStream.read, SocketStream.write = read, write  # type: ignore[method-assign]
    return timed.per_step()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", help="the src folder to measure (default: the installed smtpmail)")
    p.add_argument("--count", type=int, default=2000, help="messages per run")
    p.add_argument("--runs", type=int, default=3, help="runs per client, interleaved")
    args = p.parse_args()
    if args.source:
        sys.path.insert(0, args.source)
    sys.path.insert(0, str(BENCH))
    import peers

    message = peers.make_message(1024)
    cpus = sorted(os.sched_getaffinity(0))
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "lockstep_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        if len(cpus) > 1:
            os.sched_setaffinity(server.pid, {cpus[-1]})
            os.sched_setaffinity(0, {cpus[0]})
        rows: dict[str, list[list[float]]] = {"floor: bare socket loop": [], "smtpmail": []}
        for _ in range(args.runs):
            rows["floor: bare socket loop"].append(_floor(port, args.count, message))
            rows["smtpmail"].append(_smtpmail(port, args.count, message))
    finally:
        server.terminate()
        server.wait()
    print(f"µs from reading a reply to writing what follows (median of {args.runs} runs' medians)")
    print(f"{'client':<26}" + "".join(f"{s:>22}" for s in STEPS) + f"{'per message':>14}")
    for name, runs in rows.items():
        steps = [statistics.median(run[i] for run in runs) for i in range(4)]
        print(f"{name:<26}" + "".join(f"{v:>22.1f}" for v in steps) + f"{sum(steps):>14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
