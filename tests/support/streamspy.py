"""A real connection's stream that records what passes through it.

For tests that count the writes a flow makes or the kernel polls it asks
for, over a real connection to a real server: the connectors below wrap the
stream the client would have opened (``connect=`` of both clients).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from smtpmail.transport.aio_stream import open_tcp
from smtpmail.transport.stream import connect_tcp


class StreamSpy:
    """``stream`` itself, but each write's bytes go to ``writes`` and each
    ``read_arrived`` (a poll of the kernel) to ``polls``, when given. The
    blocking and the asyncio streams alike: what the stream's method returns
    (an awaitable for asyncio) is returned."""

    def __init__(
        self, stream: Any, writes: list[bytes] | None = None, polls: list[int] | None = None
    ) -> None:
        self._stream = stream
        self._writes = writes
        self._polls = polls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def write(self, data: bytes | memoryview, timeout: float) -> Any:
        if self._writes is not None:
            self._writes.append(bytes(data))
        return self._stream.write(data, timeout)

    def read_arrived(self, max_bytes: int) -> Any:
        if self._polls is not None:
            self._polls.append(max_bytes)
        return self._stream.read_arrived(max_bytes)


def spy_connectors(
    writes: list[bytes] | None = None, polls: list[int] | None = None
) -> tuple[Callable[..., StreamSpy], Callable[..., Awaitable[StreamSpy]]]:
    """``connect=`` for :class:`~smtpmail.Client` and for :class:`~smtpmail.AsyncClient`."""

    def connect(host: str, port: int, **where: Any) -> StreamSpy:
        return StreamSpy(connect_tcp(host, port, **where), writes, polls)

    async def connect_async(host: str, port: int, **where: Any) -> StreamSpy:
        return StreamSpy(await open_tcp(host, port, **where), writes, polls)

    return connect, connect_async
