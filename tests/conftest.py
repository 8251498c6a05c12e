from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where smtpmail is imported from: this checkout's src/, or, in scripts/test.sh's job for
# the compiled build, the folder that build was installed into (tests/test_compiled_build.py).
SOURCE = Path(os.environ.get("SMTPMAIL_TEST_SOURCE") or ROOT / "src")
# Subprocesses (the CLI, solution.py runs) import the same code, not an installed copy
# from another tree.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(SOURCE), *filter(None, [os.environ.get("PYTHONPATH")])]
)
sys.path.insert(0, str(SOURCE))

from support.delivery.mxworld import MXWorld, pick_network, usable  # noqa: E402
from support.harness import KINDS, Connect, Twin  # noqa: E402
from support.servers import RecordingServer  # noqa: E402
from support.tlsservers import Certs, TLSServer, authenticator  # noqa: E402


@pytest.fixture
def smtpd() -> Iterator[RecordingServer]:
    """A real aiosmtpd server on a free loopback port, recording what it receives."""
    with RecordingServer() as server:
        yield server


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which client a both-clients test runs with: "sync" (Client) or "async" (AsyncClient)."""
    return str(request.param)


@pytest.fixture
def connect(kind: str) -> Connect:
    """``connect(port, host=..., **client_kwargs)`` -> a Twin (not yet connected)."""

    def make(port: int, host: str = "127.0.0.1", **kwargs: Any) -> Twin:
        return Twin(kind, host, port, **kwargs)

    return make


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A trustme CA with a server certificate for localhost/127.0.0.1 (per module)."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def starttls_server(certs: Certs) -> Iterator[TLSServer]:
    """aiosmtpd requiring STARTTLS before anything, AUTH PLAIN/LOGIN only over TLS."""
    with TLSServer(
        tls_context=certs.server_context(),
        require_starttls=True,
        authenticator=authenticator(),
        auth_required=True,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def world() -> Iterator[MXWorld]:
    """The loopback Internet of support/delivery/mxworld.py (MX hosts, DNS, MTA-STS),
    for the direct-delivery tests and the outbox's direct mode."""
    reason = usable()
    if reason:
        pytest.fail(reason)
    net = pick_network()
    if net is None:
        pytest.fail("no free loopback /24 for ports 25, 53 and 443")
    w = MXWorld(net)
    yield w
    w.close()
