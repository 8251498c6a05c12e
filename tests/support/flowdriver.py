"""Drive a sans-IO flow with scripted server bytes: no sockets at all.

``drive(flow, b"250 ok\\r\\n...")`` feeds the server's bytes to a real
:class:`ReplyParser` and answers each ``Receive`` from it; every ``Send`` is
recorded, so tests compare the exact bytes the client would write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smtpmail.protocol.actions import Flow, Receive, Send
from smtpmail.protocol.reply import Reply, ReplyParser


class ScriptExhausted(AssertionError):
    """The flow asked for more replies than the script holds."""


@dataclass
class Trace:
    sends: list[bytes] = field(default_factory=list)
    receives: list[tuple[int, str, str]] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    #: the interleaving: ("send", bytes) and ("recv", count)
    steps: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def wire(self) -> bytes:
        return b"".join(self.sends)

    def lines(self) -> list[bytes]:
        return self.wire.split(b"\r\n")[:-1]

    @property
    def writes(self) -> int:
        return len(self.sends)


def drive(flow: Flow[Any], server: bytes | list[bytes], trace: Trace | None = None) -> Any:
    """Run ``flow`` to the end, answering from ``server``; return its value.

    ``trace`` (when given) records what was sent. Leftover replies fail the test:
    a flow that reads fewer replies than it provoked would pair them wrongly.
    """
    if isinstance(server, list):
        server = b"".join(server)
    parser = ReplyParser()
    parser.feed(server)
    trace = trace if trace is not None else Trace()
    answer: list[Reply] | None = None
    try:
        while True:
            action = flow.send(answer)
            answer = None
            if isinstance(action, Send):
                trace.sends.append(action.data)
                trace.steps.append(("send", action.data))
            else:
                assert isinstance(action, Receive)
                trace.receives.append((action.count, action.label, action.timeout))
                trace.steps.append(("recv", action.count))
                got = []
                for _ in range(action.count):
                    reply = parser.maybe_next_reply()
                    if reply is None:
                        raise ScriptExhausted(f"no reply left for {action.label}")
                    got.append(reply)
                trace.replies += got
                answer = got
    except StopIteration as stop:
        assert parser.buffered == 0, f"unread replies left: {parser.clear()!r}"
        return stop.value
