"""The transcript shows the message data whether it goes by DATA or by BDAT.

Postfix and Exim offer CHUNKING (RFC 3030), so most real sends go by BDAT:
the transcript hook's ``("data", text)`` (and so ``smtpmail send -v``'s
first 40 lines of the message) must come for a BDAT chunk too, after the
BDAT command that carries it, as it comes after DATA's 354.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.clirun import run_cli
from support.harness import Connect
from support.postfix import PostfixMTA

MSG = b"Subject: chunked\r\n\r\nfirst line\r\nsecond line\r\n"


@pytest.fixture(scope="module")
def mta() -> Iterator[PostfixMTA]:
    with PostfixMTA() as server:
        yield server


async def test_hook_sees_bdat_data_after_its_command(mta: PostfixMTA, connect: Connect) -> None:
    seen: list[tuple[str, str]] = []
    async with connect(mta.port, transcript=lambda kind, line: seen.append((kind, line))) as c:
        await c.send(MSG, "a@example.org", ["b@example.com"])
    bdat = seen.index(("client", f"BDAT {len(MSG)} LAST"))
    assert seen[bdat + 1] == ("data", MSG.decode())
    assert seen[bdat + 2][0] == "server" and seen[bdat + 2][1].startswith("250")


def test_send_verbose_shows_bdat_data(mta: PostfixMTA) -> None:
    r = run_cli(
        "send",
        "--port",
        str(mta.port),
        "--from",
        "a@example.org",
        "--to",
        "b@example.com",
        "--subject",
        "chunked",
        "--body",
        "first line\nsecond line",
        "-v",
    )
    assert r.status == 0, r.stderr
    lines = [line.split(None, 1)[1] for line in r.stderr.splitlines() if line.strip()]
    bdat = next(i for i, line in enumerate(lines) if line.startswith("C: BDAT "))
    assert "C: Subject: chunked" in lines[bdat + 1 :]
    assert "C: second line" in lines[bdat + 1 :]
