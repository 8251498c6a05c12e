from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers import RecordingServer


@pytest.fixture
def smtpd() -> Iterator[RecordingServer]:
    """A real aiosmtpd server on a free loopback port, recording what it receives."""
    with RecordingServer() as server:
        yield server
