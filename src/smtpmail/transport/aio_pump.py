"""The asyncio client's pump: a flow's steps carried out in the event loop's callbacks.

:class:`~smtpmail.AsyncClient`'s trampoline could await every step of a flow
(:mod:`smtpmail.transport.drive`) on its stream, as ``Client`` does. Each
reply it waits for would then cost a Future, a task wake-up and an extra
turn of the loop (one more ``epoll_wait``): most of what AsyncClient spent
above the blocking client per message (issue 19). On the loop's own socket
stream (:class:`~smtpmail.transport.aio_stream.AsyncSocketStream`) the pump
does the steps that need no waiting on the spot (writes the kernel
takes whole, bytes already buffered) and, when one must wait for bytes
or room to write, asks the stream to call it back: the flow goes on right
in ``buffer_updated``, under the deadline of that step (one watchdog timer
per stream), and the task wakes only when the operation is done or needs a
step only it can do (connect, TLS handshake, a loop turn for bytes the
kernel holds). Every other stream has each step awaited by the task.

Behaviour is the trampoline's: an error is thrown back into the flow at the
step that caused it; a cancelled task throws its ``CancelledError`` in at the
step that waited, so the flow closes the connection as it would there; the
flow runs in a copy of the task's context (``contextvars``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Generator
from typing import Any

from smtpmail.errors import _caused
from smtpmail.transport._base import BaseClient
from smtpmail.transport.aio_stream import AsyncSocketStream, timed_out
from smtpmail.transport.drive import CHUNK, POLL, READ, WRITE

__all__ = ["Finished", "pump"]

Step = tuple[int, Any]


class Finished(Exception):  # (not an error: how a result crosses an await)
    """The flow returned ``value``: a StopIteration cannot cross an ``await`` (PEP 479)."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def pump(
    client: BaseClient,
    steps: Generator[Step, Any, Any],
    value: Any,
    error: BaseException | None,
) -> _Pump:
    """Resume ``steps`` with ``value`` (or ``error``); await the result for the next
    step the task must perform, or :class:`Finished` with the flow's value."""
    return _Pump(client, steps, value, error)


class _Pump:
    __slots__ = (
        "client",
        "context",
        "deadline",
        "ended",
        "future",
        "op",
        "step",
        "steps",
        "stream",
    )

    def __init__(
        self,
        client: BaseClient,
        steps: Generator[Step, Any, Any],
        value: Any,
        error: BaseException | None,
    ) -> None:
        self.client = client
        self.steps = steps
        stream = client._stream
        self.stream = stream if type(stream) is AsyncSocketStream else None
        self.future: asyncio.Future[None] | None = None
        self.context: contextvars.Context | None = None
        self.op = READ
        self.deadline = 0.0
        self.ended = False  # the flow returned or raised: nothing can be thrown in
        self.step = self._advance(value, error)

    def __await__(self) -> Generator[Any, None, Step]:
        while self.step is None:  # waiting: the stream's callback goes on with the flow
            future = self.future = asyncio.get_running_loop().create_future()
            self.context = contextvars.copy_context()
            try:
                yield from future
            except asyncio.CancelledError as exc:
                if self.ended or (self.step is None and not future.cancelled()):
                    raise  # the flow ended: its value or error is on the future, or lost
                assert self.stream is not None
                self.stream.unlisten()
                # Thrown in where the flow stands: the step it waits on, or the
                # one it left for the task (the callback went on meanwhile).
                self.step = self._advance(None, exc)
        return self.step

    def _advance(self, value: Any, error: BaseException | None) -> Step | None:
        """Run the flow through the steps that need no waiting; the next step for
        the task, or None when the stream will call back."""
        steps, stream = self.steps, self.stream
        while True:
            try:
                op, arg = steps.send(value) if error is None else steps.throw(error)
            except BaseException as exc:  # the flow returned or raised
                self.ended = True
                if isinstance(exc, StopIteration):
                    raise _caused(Finished(exc.value), None)
                raise
            value = error = None
            if stream is None or self.client._stream is not stream:
                return op, arg  # (a connect, or the error of a closed client: the task's)
            try:
                if op == READ:
                    value = stream.take_now(CHUNK)
                    if value is None:
                        self._listen(READ, arg)
                        return None
                elif op == WRITE:
                    if not stream.write_now(arg):
                        self._listen(WRITE, self.client.timeouts.command)
                        return None
                elif op == POLL and not stream.kernel_holds_more():
                    value = stream.take_now(CHUNK)
                else:
                    return op, arg
            except BaseException as exc:  # thrown back in where the step was asked for
                error = exc

    def _listen(self, op: int, timeout: float) -> None:
        stream = self.stream
        assert stream is not None
        self.op = op
        self.deadline = stream.listen(timeout, self._woken)

    def _woken(self, error: BaseException | None) -> None:
        """The stream's callback: bytes, the end, room to write, or the deadline."""
        future = self.future
        if future is None or future.done():  # the task was cancelled meanwhile
            return
        assert self.context is not None
        self.context.run(self._resume, future, error)

    def _resume(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        stream = self.stream
        assert stream is not None
        value = None
        try:
            if error is None:
                if self.op == READ:
                    value = stream.take_now(CHUNK)
                    waiting = value is None  # (woken by room to write)
                else:
                    waiting = not stream.write_done()  # (woken by bytes; raises when lost)
                if waiting:
                    left = self.deadline - asyncio.get_running_loop().time()
                    if left > 0:
                        stream.listen(left, self._woken)
                        return
                    error = timed_out()
        except BaseException as exc:
            error = exc
        try:
            step = self._advance(value, error)
        except BaseException as exc:  # (Finished too) the task raises it
            if not future.done():  # (the flow, a hook say, may cancel the task)
                future.set_exception(exc)
            return
        if step is not None:
            self.step = step
            if not future.done():
                future.set_result(None)
