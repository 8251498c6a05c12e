"""A delaying TCP relay on loopback: emulates a link with a round-trip time.

``python bench/relay.py --target PORT --rtt 0.05`` listens on a free
127.0.0.1 port (printed on the first line of stdout) and forwards every
connection to 127.0.0.1:PORT. Each chunk read in either direction is written
on, on its own, half the RTT after it arrived: never merged with the next
chunk, never reordered. The kernel here has no netem qdisc, hence this.

The TCP handshake is delayed too: the relay opens its connection to the
server 1.5 RTT after accepting (SYN, SYN-ACK, then the ACK on which a real
server's accept() returns), so the greeting reaches the client 2 RTT after it
began to connect, as on a real link. A relay that only delayed data would
make a new connection look almost free and favour clients that reconnect.

It runs until killed (the bench starts and stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys


class _Direction:
    """One direction of one connection: a FIFO of (due time, chunk)."""

    def __init__(self, writer: asyncio.StreamWriter, delay: float) -> None:
        self.writer = writer
        self.delay = delay
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.wake = asyncio.Event()
        self.eof = False

    async def pump(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        while data := await reader.read(65536):
            self.queue.append((loop.time() + self.delay, data))
            self.wake.set()
        self.eof = True
        self.wake.set()

    async def deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                if self.eof:
                    self.writer.close()
                    return
                self.wake.clear()
                await self.wake.wait()
            due, data = self.queue.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.writer.write(data)
            await self.writer.drain()


#: Half-RTTs from the client's SYN to the server's accept(): SYN, SYN-ACK, ACK.
HANDSHAKE_HALVES = 3


async def _serve_one(
    c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter, target: int, delay: float
) -> None:
    # An SMTP client speaks only after the greeting, so nothing it could send
    # meanwhile is held back longer than a real link would hold it.
    await asyncio.sleep(HANDSHAKE_HALVES * delay)
    try:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        c_writer.close()
        return
    up, down = _Direction(s_writer, delay), _Direction(c_writer, delay)
    try:
        await asyncio.gather(up.pump(c_reader), up.deliver(), down.pump(s_reader), down.deliver())
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        c_writer.close()
        s_writer.close()


async def serve(target: int, rtt: float) -> None:
    delay = rtt / 2

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _serve_one(r, w, target, delay)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", type=int, required=True)
    p.add_argument("--rtt", type=float, default=0.05)
    a = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(a.target, a.rtt))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
