"""A window of BDAT transactions (RFC 3030 §4.2) against a real Exim.

Exim answers a ``BDAT ... LAST`` whose every RCPT it refused with 503 and keeps
the transaction open (its MAIL FROM stands), where Postfix resets it: a MAIL
pipelined behind it gets "503 sender already given", and the RCPT and BDAT
after that MAIL land in the old transaction, under the old reverse-path. Each
message must still be delivered exactly once, with its own envelope.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpmail
from support.interop.exim import EximMTA
from support.postfix import wait_for
from support.tlsservers import Certs

REFUSED = "refused@example.com"


@pytest.fixture(scope="module")
def exim(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EximMTA]:
    cert, key = certs.leaf_files(tmp_path_factory.mktemp("exim-leaf"))
    with EximMTA(
        Path(cert).read_bytes(),
        Path(key).read_bytes(),
        domains=("example.com", "example.org"),
        refused=REFUSED,
        login="user",
        password="secret",
    ) as mta:
        yield mta


def senders_of(exim: EximMTA, tag: str) -> dict[str, str]:
    """Each delivered message's Subject to its reverse-path (Exim's Received field
    says "envelope-from <...>")."""
    out = {}
    for path in exim.files():
        raw = path.read_text()
        subject = re.search(r"^Subject: (.*)$", raw, re.M)
        sender = re.search(r"\(envelope-from <([^>]*)>\)", raw)
        if subject and tag in subject[1] and sender:
            out[subject[1].strip()] = sender[1]
    return out


async def test_a_transaction_every_recipient_refused_in_the_window(
    exim: EximMTA, certs: Certs, kind: str
) -> None:
    tag = uuid.uuid4().hex[:12]
    rcpts = [["a@example.com"], [REFUSED], ["b@example.com"], [REFUSED], ["c@example.com"]]
    items = [
        (smtpmail.Envelope(f"s{i}@example.org", r), f"Subject: {i} {tag}\r\n\r\nx\r\n")
        for i, r in enumerate(rcpts)
    ]
    client_cls = smtpmail.Client if kind == "sync" else smtpmail.AsyncClient
    client = client_cls(
        exim.host, exim.port, tls_options=smtpmail.TLSOptions(ca_file=certs.ca_file)
    )
    if kind == "sync":
        with client:
            assert {"PIPELINING", "CHUNKING"} <= set(client.extensions)
            results = client.send_many(items)
    else:
        async with client:
            results = await client.send_many(items)
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert all(isinstance(results[i].error, smtpmail.RecipientsRefused) for i in (1, 3))
    wait_for("three deliveries", lambda: len(senders_of(exim, tag)) >= 3 or None)
    assert senders_of(exim, tag) == {f"{i} {tag}": f"s{i}@example.org" for i in (0, 2, 4)}
