"""How a test runs a scenario: one module, three ways in.

* Against both clients, by ``kind`` (``"sync"`` or ``"async"``): tests take the
  ``kind`` fixture (tests/conftest.py, parametrised over :data:`KINDS`), so each
  runs once with :class:`smtpmail.Client` and once with :class:`smtpmail.AsyncClient`.

  - :func:`drive` runs a list of operations (``op("send", msg)``) on a fresh
    client and returns an :class:`Outcome`: each result, or the smtpmail error
    that stopped it, and whether the client had released its socket by itself.
    Fault tests pair it with tests/support/hostile/scripted.py.
  - :class:`Twin` (the ``connect`` fixture makes one) wraps either client so that
    an ``async def`` scenario awaits every method the same way; the sync client's
    calls run in a worker thread. For scenarios that look between the calls.

* Without any client or socket: :func:`drive_flow` answers a sans-IO flow
  (``smtpmail.protocol``) from scripted server bytes and records what it sends.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smtpmail import AsyncClient, Client, SMTPError
from smtpmail.protocol.actions import Flow, Receive, Send
from smtpmail.protocol.reply import Reply, ReplyParser

KINDS = ("sync", "async")


def loopback_connector(
    kind: str, port: int, dialled: list[str] | None = None, send_buffer: int | None = None
) -> Any:
    """A client's ``connect=`` (sync or async by ``kind``) that reaches 127.0.0.1:``port``
    whatever name it is given (noted in ``dialled``): a local proxy or tunnel's stand-in.
    ``send_buffer`` fixes the kernel's send buffer of the socket (SO_SNDBUF)."""

    def connector(host: str, _port: int, **kwargs: Any) -> Any:
        if dialled is not None:
            dialled.append(host)
        sock = socket.create_connection(("127.0.0.1", port), kwargs["timeout"])
        if send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        if kind == "sync":
            return sock

        async def opened() -> socket.socket:
            return sock

        return opened()

    return connector


def make_client(kind: str, port: int, host: str = "127.0.0.1", **kwargs: Any) -> Any:
    """A Client (``kind == "sync"``) or AsyncClient, not yet connected."""
    cls = Client if kind == "sync" else AsyncClient
    return cls(host, port, **kwargs)


# -- operation lists, both clients -----------------------------------------------


@dataclass
class Op:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def op(name: str, *args: Any, **kwargs: Any) -> Op:
    """One client method call: ``op("send", message, sender=...)``."""
    return Op(name, args, kwargs)


@dataclass
class Outcome:
    client: Client | AsyncClient
    results: list[Any]
    error: BaseException | None
    #: The client had closed its socket itself when the scenario ended.
    released: bool = False

    def raised(self, kind: type[BaseException]) -> BaseException:
        assert isinstance(self.error, kind), f"expected {kind.__name__}, got {self.error!r}"
        return self.error


def drive(kind: str, port: int, ops: list[Op], **client_kwargs: Any) -> Outcome:
    """Run ``ops`` on a new client; errors from smtpmail are captured, others raise."""
    client_kwargs.setdefault("ehlo_name", "client.example")
    client_kwargs.setdefault("timeout", 10.0)
    client = make_client(kind, port, **client_kwargs)
    results: list[Any] = []
    state: list[bool] = []

    async def run_async() -> BaseException | None:
        try:
            for o in ops:
                value = getattr(client, o.name)(*o.args, **o.kwargs)
                if inspect.isawaitable(value):  # a few AsyncClient methods are plain
                    value = await value
                results.append(value)
        except SMTPError as exc:
            return exc
        finally:
            state.append(_socket_released(client))
            client.close()
            await asyncio.sleep(0)  # let the transport really close
        return None

    def run_sync() -> BaseException | None:
        try:
            for o in ops:
                results.append(getattr(client, o.name)(*o.args, **o.kwargs))
        except SMTPError as exc:
            return exc
        finally:
            state.append(_socket_released(client))
            client.close()
        return None

    error = run_sync() if kind == "sync" else asyncio.run(run_async())
    return Outcome(client, results, error, released=state[0])


def _socket_released(client: Client | AsyncClient) -> bool:
    """Has the client dropped its socket (before the test's own clean-up)?"""
    return client._stream is None and not client.is_connected


# -- free-form async scenarios, both clients --------------------------------------


class Twin:
    """Wraps a Client or AsyncClient; every method is awaited the same way."""

    def __init__(self, kind: str, host: str, port: int, **kwargs: Any) -> None:
        self.kind = kind
        self.client: Any = make_client(kind, port, host, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if inspect.iscoroutinefunction(attr):
                return await attr(*args, **kwargs)
            if self.kind == "sync":
                return await asyncio.to_thread(attr, *args, **kwargs)
            return attr(*args, **kwargs)

        return call

    async def __aenter__(self) -> Twin:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client.is_connected:
            await self.quit()


Connect = Callable[..., Twin]
"""The ``connect`` fixture: ``connect(port, host=..., **client_kwargs)`` -> a Twin."""


# -- sans-IO flows, no client at all ---------------------------------------------


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


def drive_flow(flow: Flow[Any], server: bytes | list[bytes], trace: Trace | None = None) -> Any:
    """Run ``flow`` to the end, answering each ``Receive`` from ``server``; return its value.

    The server's bytes go through a real :class:`ReplyParser`. ``trace`` (when
    given) records what was sent. Leftover replies fail the test: a flow that
    reads fewer replies than it provoked would pair them wrongly.
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
            elif isinstance(action, Receive) and action.arrived:
                # Each read here brings exactly the replies asked for: none is
                # ever waiting in the parser unasked.
                answer = []
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
