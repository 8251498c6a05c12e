"""A scripted SMTP server for fault injection: it drops connections on cue.

Only for faults a real server will not produce on demand (a drop in the
middle of the data, a drop right after the final dot). Each connection takes
the next mode from ``modes`` (the last one repeats):

* ``"ok"``: a plain, correct server (no PIPELINING), 250 to everything;
* ``"mid_data"``: closes the connection after the first block of message data;
* ``"after_dot"``: reads the whole message and the final dot, then closes
  without replying (the client cannot know whether it was delivered);
* ``"silent_after_dot"``: reads the final dot, then says nothing until the
  client gives up and closes;
* ``"late_after_dot"``: answers the final dot only after ``late`` seconds.

``messages`` keeps every message data the server read in full (also those
it then dropped the connection on), so tests can count duplicates.

It listens on 127.0.0.1 (an ephemeral port) unless given ``host`` and
``port`` (an MX address of tests/support/delivery/mxworld.py, port 25); ``data_reply``
is its answer to the final dot in ``ok`` mode.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Any


class _Handler(socketserver.StreamRequestHandler):
    server: FaultServer  # type: ignore[assignment]

    def handle(self) -> None:
        mode = self.server.next_mode()
        w = self.wfile
        w.write(b"220 faults.test ESMTP scripted\r\n")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                w.write(b"250-faults.test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                w.write(b"354 go ahead\r\n")
                if not self._data(mode):
                    return
            elif verb == b"QUIT":
                w.write(b"221 bye\r\n")
                return
            else:
                w.write(b"250 ok\r\n")

    def _data(self, mode: str) -> bool:
        """Read the data; False when the connection is to be dropped."""
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return False
            if mode == "mid_data":
                self._drop()
                return False
            if line == b".\r\n":
                break
            lines.append(line[1:] if line.startswith(b".") else line)
        with self.server.lock:
            self.server.messages.append(b"".join(lines))
        if mode == "after_dot":
            self._drop()
            return False
        if mode == "silent_after_dot":
            self.rfile.read()  # until the client closes
            return False
        if mode == "late_after_dot":
            time.sleep(self.server.late)
        self.wfile.write(self.server.data_reply + b"\r\n")
        return True

    def _drop(self) -> None:
        self.request.shutdown(socket.SHUT_RDWR)
        self.request.close()


class FaultServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        modes: list[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_reply: bytes = b"250 2.0.0 queued",
        late: float = 2.0,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.modes = list(modes)
        self.data_reply = data_reply
        self.late = late
        self.connections = 0
        self.messages: list[bytes] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def next_mode(self) -> str:
        with self.lock:
            mode = self.modes[min(self.connections, len(self.modes) - 1)]
            self.connections += 1
            return mode

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()
