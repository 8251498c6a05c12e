"""Fixtures for the direct-delivery tests: the loopback Internet of mxworld.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.delivery.mxworld import MXWorld, StartServer
from support.servers import Recorder, RecordingServer


@pytest.fixture
def start(world: MXWorld) -> Iterator[StartServer]:
    """Start a real aiosmtpd on ``<net>.N`` port 25."""
    started: list[RecordingServer] = []

    def start_server(host: int, handler: Recorder | None = None, **kw: Any) -> RecordingServer:
        server = RecordingServer(world.ip(host), 25, handler=handler, **kw)
        server.__enter__()
        started.append(server)
        return server

    yield start_server
    for server in started:
        server.__exit__(None, None, None)
    world.reset_policies()
