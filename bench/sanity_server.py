"""aiosmtpd on a free loopback port that counts what it receives (the sanity-check server).

Prints its port on the first line; on SIGTERM prints ``messages octets`` and exits.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
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
    controller = Controller(counter, hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(port, flush=True)
    done.wait()
    controller.stop()
    print(counter.messages, counter.octets, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
