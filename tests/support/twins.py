"""One scenario, both clients: the sync Client (in a worker thread) and AsyncClient.

Scenarios are ``async def`` tests taking the ``connect`` fixture (conftest.py); for the
sync client each call runs in a thread with ``asyncio.to_thread``, so the
very same scenario code drives both and must see the same behaviour.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from smtpmail.transport.aio import AsyncClient
from smtpmail.transport.sync import Client


class Twin:
    """Wraps a Client or AsyncClient; every method is awaited the same way."""

    def __init__(self, kind: str, host: str, port: int, **kwargs: Any) -> None:
        self.kind = kind
        cls = Client if kind == "sync" else AsyncClient
        self.client: Any = cls(host, port, **kwargs)

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
