"""DKIM keys for tests and the independent verifiers that check our signatures.

dkimpy's verifier (``dkim.verify``) gets the public key through its
``dnsfunc`` hook: it is a verifier written by others, not a mock of our
signer. OpenDKIM (``opendkim-testmsg``, Debian's opendkim-tools) is the
second; it is driven in tests/message/test_dkim_opendkim.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from smtpmail.message.dkim import DKIMKey

ALGORITHMS = ["rsa-sha256", "ed25519-sha256"]
SELECTOR = "sel1"
DOMAIN = "example.org"


def private_pem(algorithm: str) -> bytes:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa-sha256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def key_file(directory: Path, algorithm: str) -> Path:
    path = directory / f"{algorithm}.pem"
    if not path.exists():
        path.write_bytes(private_pem(algorithm))
    return path


def make_key(
    directory: Path, algorithm: str, domain: str = DOMAIN, selector: str = SELECTOR
) -> DKIMKey:
    return DKIMKey.from_file(selector, domain, key_file(directory, algorithm))


def dnsmasq_record(key: DKIMKey) -> str:
    """The key's TXT record as a dnsmasq ``txt-record`` line (strings of at most
    255 octets, RFC 1035 §3.3.14; verifiers join them, RFC 6376 §3.6.2.2)."""
    text = key.dns_record()
    parts = ",".join(f'"{text[i : i + 250]}"' for i in range(0, len(text), 250))
    return f"txt-record={key.selector}._domainkey.{key.domain},{parts}"


def verify_dns(received: bytes, nameserver: tuple[str, int]) -> bool:
    """dkimpy's verdict with the public key looked up on the test DNS server."""
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [nameserver[0]]
    resolver.port = nameserver[1]

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        return b"".join(b"".join(rdata.strings) for rdata in answer)

    return bool(dkim.verify(received, dnsfunc=dnsfunc))


def verify(received: bytes, key: DKIMKey) -> bool:
    """dkimpy's verdict on ``received`` (the bytes as a server got them)."""
    record = key.dns_record().encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{key.selector}._domainkey.{key.domain}.".encode()
        return record

    return bool(dkim.verify(received, dnsfunc=dnsfunc))


def signed_fields(received: bytes) -> list[str]:
    """The h= list of the (first) DKIM-Signature field."""
    header = received.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"").replace(b"\t", b"")
    tags = header.split(b"DKIM-Signature:", 1)[1]
    h = next(t for t in tags.split(b";") if t.strip().startswith(b"h="))
    return h.strip()[2:].decode().split(":")


OPENDKIM = "/usr/sbin/opendkim"


def opendkim_verifies(message: bytes, workdir: Path, config: list[str]) -> bool:
    """OpenDKIM's verdict on ``message`` (``config``: how it finds the key)."""
    eml, conf = workdir / "received.eml", workdir / "opendkim.conf"
    eml.write_bytes(message)
    conf.write_text("\n".join(["Mode v", "Syslog no", *config, ""]))
    done = subprocess.run(
        [OPENDKIM, "-x", str(conf), "-t", str(eml)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "verification" in out, out  # it did look at a signature
    return "succeeded" in out and "failed" not in out


def opendkim_dns_config(workdir: Path, nameserver: str) -> list[str]:
    """OpenDKIM settings to look keys up on ``nameserver`` (port 53). Debian's
    OpenDKIM resolves with libunbound, which by default neither queries
    loopback addresses nor looks up the reserved .test domain (RFC 6761)."""
    unbound = workdir / "unbound.conf"
    unbound.write_text(
        'server:\n    do-not-query-localhost: no\n    local-zone: "test." nodefault\n'
        f'forward-zone:\n    name: "."\n    forward-addr: {nameserver}\n'
    )
    return [f"ResolverConfiguration {unbound}"]


#: Messages with what tends to break canonicalization: long and blank-padded
#: lines, trailing blank lines, folded headers, 8-bit bodies, LF endings, a Bcc.
MESSAGES = {
    "plain": (
        b"From: Ann <ann@example.org>\r\nTo: bob@example.net\r\nSubject: hello\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n"
        b"\r\nHello Bob.\r\n"
    ),
    "long-lines": (
        b"From: ann@example.org\r\nTo: bob@example.net\r\nSubject: "
        + b"word " * 150
        + b"\r\n\r\n"
        + (b"x" * 500 + b"  \t  " + b"y" * 480 + b"\r\n") * 3
    ),
    "trailing-blank-lines": (
        b"From: ann@example.org\r\nTo: bob@example.net\r\nSubject: blanks\r\n\r\n"
        b"text   \r\n\r\n  \r\n\t\r\n\r\n\r\n"
    ),
    "folded-headers": (
        b"From: Ann\r\n  <ann@example.org>\r\nTo: bob@example.net,\r\n\tcarl@example.net\r\n"
        b"Subject:   folded\r\n   over   lines  \r\nX-Mixed:\tCase  \r\n\r\nbody\r\n"
    ),
    "8bit": (
        "From: ann@example.org\r\nTo: bob@example.net\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nCafé, crème brûlée, Grüße.\r\n"
    ).encode(),
    "lf-endings": (
        b"From: ann@example.org\nTo: bob@example.net\nSubject: lf\n\nline one \nline two\n\n"
    ),
    "bcc": (
        b"From: ann@example.org\r\nTo: bob@example.net\r\nBcc: Blind <blind1@example.net>,\r\n"
        b"  blind2@example.net\r\nSubject: secret\r\n\r\nBcc: body text stays\r\n"
    ),
    "no-final-newline": b"From: ann@example.org\r\nTo: bob@example.net\r\n\r\nunended",
}
RECIPIENTS = ["bob@example.net", "blind1@example.net"]
