"""TLS on the command line in its own words: --fingerprint, what an unverified
certificate says, and errors that name options (not the library's TLSOptions).

Through the installed console script against aiosmtpd with trustme certificates.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpmail.transport.x509 import CertificateParseError, read_certificate
from support.clirun import CLIResult, run_script
from support.tlsservers import Certs, TLSServer

MSG = ("--from", "a@example.org", "--to", "b@example.org", "--subject", "s", "--body", "x")


@pytest.fixture
def plain_starttls(certs: Certs) -> TLSServer:
    """aiosmtpd offering STARTTLS with the trustme certificate, no AUTH."""
    with TLSServer(tls_context=certs.server_context(), require_starttls=True) as server:
        yield server


def smtpmail(tmp_path: Path, *argv: str) -> CLIResult:
    home = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data")}
    return run_script("smtpmail", *argv, environ=home)


def probe_json(tmp_path: Path, port: int, *extra: str) -> dict:
    r = smtpmail(tmp_path, "probe", f"127.0.0.1:{port}", "--tls", "starttls", *extra, "--json")
    assert r.status == 0, r.stderr
    return json.loads(r.stdout)


def test_untrusted_certificate_error_names_cli_options(
    plain_starttls: TLSServer, tmp_path: Path
) -> None:
    """Before: 'to trust a private CA pass TLSOptions(ca_file=...)' on the command line."""
    r = smtpmail(tmp_path, "send", "--port", str(plain_starttls.port), "--tls", "starttls", *MSG)
    assert r.status == 69
    assert "--cafile" in r.stderr and "--fingerprint" in r.stderr, r.stderr
    assert "TLSOptions" not in r.stderr and "ca_file" not in r.stderr
    assert not plain_starttls.messages


def test_insecure_no_verify_shows_what_the_certificate_says(
    plain_starttls: TLSServer, certs: Certs, tmp_path: Path
) -> None:
    """Before: subject None, names [] whenever the certificate was not verified."""
    tls = probe_json(tmp_path, plain_starttls.port, "--insecure-no-verify")["tls"]["tls"]
    assert tls["verified"] is False
    assert tls["subject"] and "O=trustme" in tls["subject"]
    assert tls["issuer"] and "trustme" in tls["issuer"]
    assert tls["names"] == ["localhost", "127.0.0.1", "mail.example.org"]
    assert tls["not_before"].endswith("GMT") and tls["not_after"].endswith("GMT")
    import hashlib

    leaf = ssl.PEM_cert_to_DER_cert(certs.leaf.cert_chain_pems[0].bytes().decode())
    digest = hashlib.sha256(leaf).hexdigest().upper()
    assert tls["fingerprint"].replace(":", "") == digest
    # The verified view says the same.
    verified = probe_json(tmp_path, plain_starttls.port, "--cafile", certs.ca_file)["tls"]["tls"]
    for key in ("subject", "issuer", "names", "not_before", "not_after", "fingerprint"):
        assert verified[key] == tls[key], key
    # And the text report shows it too.
    r = smtpmail(
        tmp_path,
        "probe",
        f"127.0.0.1:{plain_starttls.port}",
        "--tls",
        "starttls",
        "--insecure-no-verify",
    )
    assert "tls subject: " in r.stdout and "O=trustme" in r.stdout, r.stdout
    assert "tls names: localhost, 127.0.0.1, mail.example.org" in r.stdout


def test_fingerprint_pins_the_certificate(plain_starttls: TLSServer, tmp_path: Path) -> None:
    tls = probe_json(tmp_path, plain_starttls.port, "--insecure-no-verify")["tls"]["tls"]
    port = str(plain_starttls.port)
    ok = smtpmail(tmp_path, "send", "--port", port, "--tls", "starttls",
                  "--fingerprint", tls["fingerprint"], *MSG)  # fmt: skip
    assert ok.status == 0, ok.stderr
    assert len(plain_starttls.messages) == 1
    plain_hex = tls["fingerprint"].replace(":", "").lower()
    wrong = "00" * 32
    bad = smtpmail(tmp_path, "send", "--port", port, "--fingerprint", wrong, *MSG)
    assert bad.status == 69 and "pinned fingerprint" in bad.stderr, bad.stderr
    assert plain_hex.upper() in bad.stderr.replace(":", "")
    assert len(plain_starttls.messages) == 1


def test_fingerprint_from_the_config_account(plain_starttls: TLSServer, tmp_path: Path) -> None:
    tls = probe_json(tmp_path, plain_starttls.port, "--insecure-no-verify")["tls"]["tls"]
    config = tmp_path / "cfg" / "smtpmail" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        'default = "pinned"\n[accounts.pinned]\n'
        f'host = "127.0.0.1"\nport = {plain_starttls.port}\ntls = "starttls"\n'
        f'fingerprint = "{tls["fingerprint"]}"\n'
    )
    r = smtpmail(tmp_path, "send", *MSG)
    assert r.status == 0, r.stderr
    assert len(plain_starttls.messages) == 1
    config.write_text(config.read_text().replace(tls["fingerprint"], "abc"))
    r = smtpmail(tmp_path, "send", *MSG)
    assert r.status == 78 and "account's fingerprint" in r.stderr, r.stderr


def test_malformed_fingerprint_is_a_usage_error(tmp_path: Path) -> None:
    r = smtpmail(tmp_path, "send", "--port", "1", "--fingerprint", "abc", *MSG)
    assert r.status == 64 and "--fingerprint 'abc'" in r.stderr, r.stderr


def test_clear_text_auth_refusal_names_cli_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 'use tls=TLSMode.REQUIRED ... or pass allow_plaintext_auth=True'.

    In-process: only a monkeypatch makes loopback count as a public network."""
    from smtpmail.transport import _base
    from support.clirun import run_cli
    from support.servers import RecordingServer

    monkeypatch.setattr(_base, "LOOPBACK_IS_PRIVATE", False)
    with RecordingServer() as server:
        r = run_cli("send", "--port", str(server.port), "--tls", "none", "-u", "me",
                    "--password-env", "PW", *MSG, environ={"PW": "secret"})  # fmt: skip
    assert r.status == 77, r.stderr
    assert "--tls starttls" in r.stderr and "--allow-plaintext-auth" in r.stderr, r.stderr
    assert "TLSMode" not in r.stderr and "allow_plaintext_auth" not in r.stderr


# -- the DER reader, against OpenSSL's own decoding ---------------------------------


@functools.cache
def _key() -> Any:  # one key for every example: key generation is slow
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
).filter(
    # X.520 bounds a common name at 64 bytes (cryptography refuses longer), and
    # the issuer is named "issuer " + cn.
    lambda s: (
        s.strip() == s
        and "," not in s
        and "=" not in s
        and "\\" not in s
        and len(s.encode()) <= 64 - len("issuer ")
    )
)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_dns = st.lists(_label, min_size=2, max_size=4).map(".".join)


@settings(max_examples=60, deadline=None)
@given(
    cn=_text,
    org=st.none() | _text,
    names=st.lists(_dns | st.ip_addresses().map(str), max_size=4),
    start=st.datetimes(
        min_value=datetime.datetime(1960, 1, 1), max_value=datetime.datetime(2090, 1, 1)
    ),
    days=st.integers(1, 20000),
)
def test_x509_reader_agrees_with_openssl(
    cn: str, org: str | None, names: list[str], start: datetime.datetime, days: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    start = start.replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer " + cn)]))
        .public_key(_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )
    if names:
        general = [
            x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in names
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    cert = builder.sign(_key(), hashes.SHA256())
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = tmp_path_factory.mktemp("x509") / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    expected = ssl._ssl._test_decode_cert(str(pem))  # type: ignore[attr-defined]
    got = read_certificate(der)
    short = {"commonName": "CN", "organizationName": "O"}
    assert got.subject == ", ".join(
        f"{short[k]}={v}" for rdn in expected["subject"] for k, v in rdn
    )
    assert got.issuer == f"CN=issuer {cn}"
    assert got.not_before == expected["notBefore"]
    assert got.not_after == expected["notAfter"]
    openssl_names = [v for _, v in expected.get("subjectAltName", ())]
    assert [str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in got.names] == [
        str(ipaddress.ip_address(n.strip())) if _is_ip(n.strip()) else n for n in openssl_names
    ]


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@given(st.binary(max_size=200))
def test_x509_reader_refuses_junk_with_its_own_error(data: bytes) -> None:
    with contextlib.suppress(CertificateParseError):  # any other exception fails
        read_certificate(data)
