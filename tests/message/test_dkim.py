"""DKIM signing (RFC 6376, RFC 8463): checked by dkimpy's verifier on what a real
server received, for both algorithms and the messages that break canonicalization.

Every path signs in smtpmail.message.content.as_content, after the Bcc rule:
both clients (``dkim=`` on the client), the one-shot API, the outbox worker
(the stored message stays unsigned). deliver() is tested with the MX world
(tests/delivery), the command line in tests/cli/test_dkim_cli.py, OpenDKIM in
tests/message/test_dkim_opendkim.py.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import dkim
import dkim.canonicalization
import pytest
from hypothesis import given
from hypothesis import strategies as st

import smtpmail
from smtpmail.errors import InvalidArgument
from smtpmail.message.content import as_content, wire_size
from smtpmail.message.dkim import BodyHasher, DKIMKey
from smtpmail.outbox import Outbox, Worker
from support.dkimcheck import (
    ALGORITHMS,
    MESSAGES,
    RECIPIENTS,
    make_key,
    private_pem,
    signed_fields,
    verify,
)
from support.harness import Connect
from support.servers import RecordingServer


@pytest.fixture(scope="module", params=ALGORITHMS)
def key(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DKIMKey:
    return make_key(tmp_path_factory.mktemp("keys"), str(request.param))


def check(received: bytes, key: DKIMKey) -> None:
    assert received.startswith(b"DKIM-Signature: v=1; a=" + key.algorithm.encode())
    assert verify(received, key), received[:600]
    assert b"blind" not in received and "bcc" not in signed_fields(received)


def _wire(message: bytes) -> bytes:
    """``message`` as the core sends it: every line ending CRLF, the last line ended."""
    wire = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return wire if wire.endswith(b"\r\n") else wire + b"\r\n"


# -- the signer -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_signature_verifies(key: DKIMKey, name: str) -> None:
    message = MESSAGES[name]
    data = b"".join(as_content(message, dkim=key).chunks)
    check(_wire(data), key)


def test_tampering_is_detected(key: DKIMKey) -> None:
    data = _wire(b"".join(as_content(MESSAGES["plain"], dkim=key).chunks))
    assert verify(data, key)
    assert not verify(data.replace(b"Hello Bob", b"Hello Rob"), key)
    assert not verify(data.replace(b"Subject: hello", b"Subject: hallo"), key)
    # Oversigned: a second Subject added in transit breaks the signature.
    assert not verify(data.replace(b"Subject: hello\r\n", b"Subject: hello\r\nSubject: x\r\n"), key)


def test_chosen_fields_are_signed_and_oversigned(key: DKIMKey) -> None:
    data = b"".join(as_content(MESSAGES["8bit"], dkim=key).chunks)
    h = signed_fields(data)
    # Present fields once, plus once more for those nobody may add (RFC 6376 §8.15).
    assert h.count("from") == 2 and h.count("subject") == 2 and h.count("to") == 2
    assert h.count("content-type") == 2 and h.count("mime-version") == 2
    assert "x-mixed" not in h and "bcc" not in h


@given(
    body=st.lists(
        st.sampled_from([b"a", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\xc3\xa9", b"  x  "]),
        max_size=40,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_body_hash_streamed_equals_dkimpy(body: list[bytes], cuts: list[int]) -> None:
    """The body hash of any body, fed in any blocks, is dkimpy's relaxed body hash
    of the body as it goes on the wire (lone CR and LF become CRLF)."""
    import hashlib

    data = b"".join(body)
    hasher = BodyHasher()
    start = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        hasher.feed(data[start:cut])
        start = cut
    hasher.feed(data[start:])
    wire = _wire(data) if data else b""
    relaxed = dkim.canonicalization.Relaxed.canonicalize_body(wire)
    assert hasher.digest() == hashlib.sha256(relaxed).digest()


def test_bad_keys_are_typed_errors(tmp_path: Path) -> None:
    pem = private_pem("ed25519-sha256")
    with pytest.raises(InvalidArgument, match="PEM"):
        DKIMKey("s", "example.org", b"not a key")
    with pytest.raises(InvalidArgument, match="selector"):
        DKIMKey("bad selector", "example.org", pem)
    with pytest.raises(InvalidArgument, match="domain"):
        DKIMKey("s", "exa mple.org", pem)
    # d= is written as delivery writes domains (smtpmail.protocol.idn): IDNA 2003
    # would sign for strasse.de, another domain than IDNA 2008's xn--strae-oqa.de.
    with pytest.raises(InvalidArgument, match="ß"):
        DKIMKey("s", "straße.de", pem)
    assert DKIMKey("s", "Bücher.example.", pem).domain == "xn--bcher-kva.example"
    with pytest.raises(InvalidArgument, match="key file"):
        DKIMKey.from_file("s", "example.org", tmp_path / "missing.pem")
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    with pytest.raises(InvalidArgument, match="RSA or Ed25519"):
        DKIMKey("s", "example.org", ec_pem)
    assert DKIMKey("s", "example.org", pem.decode()).algorithm == "ed25519-sha256"


@pytest.mark.parametrize("ktype", ["rsa", "ed25519"])
async def test_keys_made_by_dkimpy_sign(
    smtpd: RecordingServer, connect: Connect, tmp_path: Path, ktype: str
) -> None:
    # dkimpy's dknewkey writes an RSA key as PEM but an Ed25519 key as its bare
    # base64 seed (as dkimpy's signer reads it): a user moving from dkimpy keeps
    # the key whose public half is already in DNS.
    subprocess.run(
        [sys.executable, "-m", "dkim.dknewkey", "--ktype", ktype, str(tmp_path / "mail")],
        check=True,
        capture_output=True,
    )
    key = DKIMKey.from_file("mail", "example.org", tmp_path / "mail.key")
    assert key.algorithm == f"{ktype}-sha256"
    record = (tmp_path / "mail.dns").read_bytes()  # dknewkey's own TXT record
    async with connect(smtpd.port, dkim=key) as client:
        await client.send(MESSAGES["bcc"], "ann@example.org", RECIPIENTS)
    (got,) = smtpd.messages
    assert dkim.verify(got.content, dnsfunc=lambda name, timeout=5: record), got.content[:600]


def test_size_counts_the_signature(key: DKIMKey) -> None:
    content = as_content(MESSAGES["lf-endings"], dkim=key)
    data = b"".join(content.chunks)
    assert content.declared_size() == wire_size(data)
    assert content.data == data  # the fast path sends the signed bytes


@pytest.mark.parametrize("form", ["file", "chunks"])
def test_streamed_input_signed_the_same_on_replay(key: DKIMKey, form: str, tmp_path: Path) -> None:
    """A stream is read once for the body hash and again to send; a replay (a
    further transaction, RFC 5321 §4.5.3.1.10) sends the very same bytes."""
    message = MESSAGES["bcc"] + b"z" * 900_000 + b"\r\n"
    (tmp_path / "m.eml").write_bytes(message)
    with (tmp_path / "m.eml").open("rb") as f:
        source = (
            f
            if form == "file"
            else iter([message[i : i + 1000] for i in range(0, len(message), 1000)])
        )
        content = as_content(source, dkim=key)
        first = b"".join(content.chunks)
        again = b"".join(content.again().chunks)
    assert first == again
    assert content.size == len(first)  # SIZE counts the signature field
    check(_wire(first), key)
    field, _, rest = first.partition(b"\r\nFrom: ")
    assert b"From: " + rest == b"".join(as_content(message).chunks)  # signed, Bcc removed
    assert field.startswith(b"DKIM-Signature: ")


# -- what a real server received ---------------------------------------------------------


def _forms(message: bytes) -> dict[str, object]:
    return {
        "bytes": message,
        "str": message.decode(),
        "file": io.BytesIO(message),
        "chunks": iter([message[i : i + 7] for i in range(0, len(message), 7)]),
    }


@pytest.mark.parametrize("name", ["folded-headers", "8bit", "bcc", "trailing-blank-lines"])
async def test_client_signs_every_input_form(
    smtpd: RecordingServer, connect: Connect, key: DKIMKey, name: str
) -> None:
    message = MESSAGES[name]
    async with connect(smtpd.port, dkim=key) as client:
        for form in _forms(message).values():
            await client.send(form, "ann@example.org", RECIPIENTS)
        await client.send_many([(smtpmail.Envelope("ann@example.org", RECIPIENTS), message)])
    assert len(smtpd.messages) == 5
    for got in smtpd.messages:
        check(got.content, key)
        assert sorted(got.rcpt_tos) == sorted(RECIPIENTS)


async def test_client_signs_an_email_message(
    smtpd: RecordingServer, connect: Connect, key: DKIMKey
) -> None:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["To"] = "bob@example.net"
    msg["Bcc"] = "blind1@example.net"
    msg["Subject"] = "composed " + "long " * 30
    msg.set_content("Grüße\n" + "wörds " * 200 + "\n\n\n")
    async with connect(smtpd.port, dkim=key) as client:
        await client.send(msg)
    (got,) = smtpd.messages
    check(got.content, key)
    assert "blind1@example.net" in got.rcpt_tos


def test_one_shot_send_and_send_async(smtpd: RecordingServer, key: DKIMKey) -> None:
    smtpmail.send(MESSAGES["bcc"], "ann@example.org", RECIPIENTS, port=smtpd.port, dkim=key)
    asyncio.run(
        smtpmail.send_async(
            MESSAGES["bcc"], "ann@example.org", RECIPIENTS, port=smtpd.port, dkim=key
        )
    )
    for got in smtpd.messages:
        check(got.content, key)


def test_outbox_worker_signs_at_send_time(
    smtpd: RecordingServer, key: DKIMKey, tmp_path: Path
) -> None:
    box = Outbox(tmp_path / "q")
    queued = box.add(MESSAGES["bcc"], "ann@example.org", RECIPIENTS)
    stored = box.eml_path(queued.id).read_bytes()
    Worker(box, port=smtpd.port, dkim=key).run(ids=[queued.id])
    (got,) = smtpd.messages
    check(got.content, key)
    assert b"DKIM-Signature" not in stored
    path = box.eml_path(queued.id)
    assert path.read_bytes() == stored, "the stored message is never changed"
