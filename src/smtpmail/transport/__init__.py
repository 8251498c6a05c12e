"""The only layer that touches sockets, ssl and asyncio.

The clients are imported lazily, so a blocking send never imports asyncio.
"""

from __future__ import annotations

__all__ = ["AsyncClient", "Client", "Timeouts", "Transcript"]

_WHERE = {
    "AsyncClient": "smtpmail.transport.aio",
    "Client": "smtpmail.transport.sync",
    "Timeouts": "smtpmail.transport._base",
    "Transcript": "smtpmail.transport._base",
}

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

    from smtpmail.transport._base import Timeouts as Timeouts
    from smtpmail.transport._base import Transcript as Transcript
    from smtpmail.transport.aio import AsyncClient as AsyncClient
    from smtpmail.transport.sync import Client as Client


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'smtpmail.transport' has no attribute {name!r}")
    import importlib  # here, not at the top: the CLI never needs it (start-up time)

    return getattr(importlib.import_module(module), name)
