"""aiosmtpd on a free loopback port that counts what it receives: the lock-step server.

aiosmtpd offers neither PIPELINING nor CHUNKING, so every client waits for
each reply before the next command. Prints its port on the first line; on
SIGUSR1 prints ``messages octets`` received so far; on SIGTERM prints them
and exits.
"""

from __future__ import annotations

import signal
import socket
import sys
from typing import Any

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.octets = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        self.octets += len(envelope.content)
        return "250 OK"


def main() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    counter = Counter()
    # Blocked before the server's thread starts (it inherits the mask), so
    # that sigwait below is the one place these signals arrive.
    wanted = {signal.SIGTERM, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    controller = Controller(counter, hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    print(port, flush=True)
    while True:
        signo = signal.sigwait(wanted)
        print(counter.messages, counter.octets, flush=True)
        if signo == signal.SIGTERM:
            break
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
