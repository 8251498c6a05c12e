"""Small CLI defects from issue 14, each through ``smtpmail`` (run_cli) against a real aiosmtpd."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest

from smtpmail import AsyncClient, Client
from smtpmail.cli import exits
from smtpmail.errors import InvalidArgument
from support.clirun import run_cli
from support.servers import RecordingServer
from support.tlsservers import PASSWORD, USER, TLSServer


def _srv(server: RecordingServer | TLSServer) -> tuple[str, str]:
    return ("--server", f"smtp://{server.host}:{server.port}")


def test_address_error_quotes_the_whole_input(smtpd: RecordingServer) -> None:
    r = run_cli(
        "send", *_srv(smtpd), "--from", "not an address", "--to", "a@example.net", "--body", "x"
    )
    assert r.status == exits.EX_DATAERR
    assert "'not an address'" in r.stderr, r.stderr
    assert smtpd.raw == b""


def test_unknown_option_prints_the_subcommands_usage() -> None:
    r = run_cli("send", "--bogus")
    assert r.status == exits.EX_USAGE
    assert r.stderr.startswith("usage: smtpmail send "), r.stderr
    assert "smtpmail send: error: unrecognized arguments: --bogus" in r.stderr


def test_probe_help_has_its_own_exit_table() -> None:
    r = run_cli("probe", "--help")
    assert r.status == 0
    assert "partial success" not in r.stdout  # send's table: probe sends no message
    assert "every recipient refused" not in r.stdout
    assert "0   the server answered" in r.stdout


def test_missing_cafile_is_named(starttls_server: TLSServer) -> None:
    r = run_cli(
        "send",
        *_srv(starttls_server),
        "--from",
        "me@example.org",
        "--to",
        "a@example.net",
        "--body",
        "x",
        "--cafile",
        "/nonexistent/ca.pem",
    )
    assert r.status == exits.EX_NOINPUT, r.stderr
    assert "/nonexistent/ca.pem" in r.stderr


@pytest.mark.parametrize("option", ["--cafile", "--client-cert"])
def test_a_missing_certificate_file_is_named_before_connecting(
    smtpd: RecordingServer, option: str
) -> None:
    """Also where no TLS would happen (a server without STARTTLS): the file named
    is bad input, found before a byte goes out, not skipped in silence."""
    r = run_cli(
        "send", *_srv(smtpd), "--from", "me@example.org", "--to", "a@example.net",
        "--body", "x", option, "/nonexistent/ca.pem",
    )  # fmt: skip
    assert r.status == exits.EX_NOINPUT, r.stderr
    assert "/nonexistent/ca.pem" in r.stderr
    assert smtpd.raw == b"" and smtpd.messages == []


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_clients_check_certificate_files_when_made(client: type[Client | AsyncClient]) -> None:
    from smtpmail import TLSOptions
    from smtpmail.errors import InputError

    with pytest.raises(InputError, match=r"/nonexistent/ca\.pem"):
        client("127.0.0.1", 1, tls_options=TLSOptions(ca_file="/nonexistent/ca.pem"))


def test_unknown_auth_mechanism_is_a_usage_error(starttls_server: TLSServer) -> None:
    r = run_cli(
        "send",
        *_srv(starttls_server),
        "--from",
        "me@example.org",
        "--to",
        "a@example.net",
        "--body",
        "x",
        "--user",
        USER,
        "--password-env",
        "PW",
        "--auth-mechanism",
        "BOGUS",
        "--insecure-no-verify",
        environ={"PW": PASSWORD},
    )
    assert r.status == exits.EX_USAGE, r.stderr
    assert "BOGUS" in r.stderr


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_unknown_auth_mechanism_fails_at_construction(client: type[Client | AsyncClient]) -> None:
    # port 9: nothing is contacted, the check comes first
    with pytest.raises(InvalidArgument, match="'bogus'"):
        client("127.0.0.1", 9, auth=(USER, PASSWORD), auth_mechanism="bogus")


def test_mime_version_only_at_the_top(smtpd: RecordingServer, tmp_path: Path) -> None:
    att = tmp_path / "a.pdf"
    att.write_bytes(b"%PDF fake")
    r = run_cli("send", *_srv(smtpd), "--from", "me@example.org", "--to", "a@example.net",
                "--body", "text", "--html", "<p>html</p>", "--attach", str(att))  # fmt: skip
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    assert got.content.count(b"MIME-Version:") == 1, got.content.decode()
    assert got.content.startswith(b"MIME-Version:") or b"\r\nMIME-Version: 1.0\r\n" in got.content
    msg = message_from_bytes(got.content, policy=policy.default)
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf",
    ]  # fmt: skip


def test_a_type_error_from_a_bug_is_not_a_usage_error(
    smtpd: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TypeError raised while making the client is a defect in smtpmail (exit 70,
    "internal error"), not the user's TLS/AUTH options (64): no fallback for an
    older smtpmail turns it into one."""
    import smtpmail.transport.sync

    class BuggyClient(Client):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise TypeError("a bug in the client")

    monkeypatch.setattr(smtpmail.transport.sync, "Client", BuggyClient)
    r = run_cli(
        "send", *_srv(smtpd), "--tls", "none", "--from", "a@example.org", "--to", "b@example.net",
        "--body", "x",
    )  # fmt: skip
    assert r.status == exits.EX_SOFTWARE, r.stderr
    assert "internal error: TypeError: a bug in the client" in r.stderr
    assert smtpd.raw == b""
