"""Run the same scenario with the blocking Client and with the AsyncClient.

A scenario is a list of operations (method name, arguments); :func:`drive`
runs them in order on a fresh client of the given kind and returns an
:class:`Outcome` with each result, or the error that stopped it, and the
client itself so tests can look at its state afterwards.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Any

from smtpmail import AsyncClient, Client, SMTPError

KINDS = ("sync", "async")


@dataclass
class Op:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def op(name: str, *args: Any, **kwargs: Any) -> Op:
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


def make_client(kind: str, port: int, **kwargs: Any) -> Client | AsyncClient:
    kwargs.setdefault("ehlo_name", "client.example")
    kwargs.setdefault("timeout", 10.0)
    cls = Client if kind == "sync" else AsyncClient
    return cls("127.0.0.1", port, **kwargs)


def drive(kind: str, port: int, ops: list[Op], **client_kwargs: Any) -> Outcome:
    """Run ``ops`` on a new client; errors from smtpmail are captured, others raise."""
    client = make_client(kind, port, **client_kwargs)
    results: list[Any] = []
    state: list[bool] = []

    async def run_async() -> BaseException | None:
        try:
            for o in ops:
                value = getattr(client, o.name)(*o.args, **o.kwargs)
                if inspect.isawaitable(value):
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
