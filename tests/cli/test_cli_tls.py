"""The CLI's TLS and AUTH options against aiosmtpd with trustme certificates."""

from __future__ import annotations

import json
from pathlib import Path

from smtpmail.cli import exits
from support.clirun import CLIResult, run_cli
from support.servers import RecordingServer
from support.tlsservers import PASSWORD, USER, Certs, TLSServer

MSG = ("--from", "a@example.org", "--to", "b@example.org", "--subject", "s", "--body", "x")


def no_secret(*texts: str) -> None:
    import base64

    forms = [PASSWORD, base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()]
    for text in texts:
        for form in forms:
            assert form not in text


def _send_with_auth(server: TLSServer, certs: Certs, password: str) -> CLIResult:
    """send over STARTTLS with --user and the password from the environment, -v --json."""
    return run_cli(
        "send",
        "--port",
        str(server.port),
        "--cafile",
        certs.ca_file,
        "--user",
        USER,
        "--password-env",
        "SMTP_PW",
        *MSG,
        "-v",
        "--json",
        environ={"SMTP_PW": password},
    )


def test_starttls_auth_json_and_transcript(starttls_server: TLSServer, certs: Certs) -> None:
    r = _send_with_auth(starttls_server, certs, PASSWORD)
    assert r.status == 0, r.stderr
    assert len(starttls_server.messages) == 1
    out = json.loads(r.stdout)
    tls = out["server"]["tls"]
    assert tls["version"].startswith("TLSv1.") and tls["verified"] is True
    assert " C: STARTTLS" in r.stderr and " C: AUTH " in r.stderr
    no_secret(r.stdout, r.stderr)


def test_password_command(starttls_server: TLSServer, certs: Certs) -> None:
    r = run_cli(
        "send",
        "--port",
        str(starttls_server.port),
        "--cafile",
        certs.ca_file,
        "--user",
        USER,
        "--password-command",
        'printf "%s\\n" "$SMTP_PW"',
        *MSG,
        environ={"SMTP_PW": PASSWORD},
    )
    assert r.status == 0, r.stderr
    assert len(starttls_server.messages) == 1


def test_account_with_password_command(
    starttls_server: TLSServer, certs: Certs, tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text(
        f'[accounts.work]\nserver = "submission://127.0.0.1:{starttls_server.port}"\n'
        f'user = "{USER}"\npassword_env = "WORK_PW"\nca_file = "{certs.ca_file}"\n'
        'from = "a@example.org"\n'
    )
    r = run_cli(
        "send",
        "--to",
        "b@example.org",
        "--body",
        "x",
        config_dir=tmp_path,
        environ={"WORK_PW": PASSWORD},
    )
    assert r.status == 0, r.stderr
    assert starttls_server.messages[0].mail_from == "a@example.org"


def test_wrong_password_exits_77(starttls_server: TLSServer, certs: Certs) -> None:
    r = _send_with_auth(starttls_server, certs, PASSWORD + "x")
    assert r.status == exits.EX_NOPERM == 77
    assert starttls_server.messages == []
    assert (PASSWORD + "x") not in r.stdout + r.stderr


def test_untrusted_certificate_exits_69(starttls_server: TLSServer) -> None:
    r = run_cli("send", "--port", str(starttls_server.port), "--tls", "starttls", *MSG)
    assert r.status == exits.EX_UNAVAILABLE
    assert starttls_server.messages == []


def test_required_starttls_not_offered_exits_69(smtpd: RecordingServer) -> None:
    r = run_cli("send", "--port", str(smtpd.port), "--tls", "starttls", *MSG)
    assert r.status == exits.EX_UNAVAILABLE
    assert smtpd.messages == []


def test_smtps_url(certs: Certs) -> None:
    with TLSServer(implicit=certs.server_context()) as server:
        r = run_cli(
            "send",
            "--server",
            f"smtps://127.0.0.1:{server.port}",
            "--cafile",
            certs.ca_file,
            *MSG,
            "--json",
        )
        assert r.status == 0, r.stderr
        assert json.loads(r.stdout)["server"]["tls"]["verified"] is True
        assert len(server.messages) == 1


def test_probe_reports_tls_and_auth_after_starttls(
    starttls_server: TLSServer, certs: Certs
) -> None:
    r = run_cli("probe", f"127.0.0.1:{starttls_server.port}", "--cafile", certs.ca_file)
    assert r.status == 0, r.stdout + r.stderr
    assert "before TLS:" in r.stdout and "after STARTTLS:" in r.stdout
    assert "tls version: TLSv1." in r.stdout
    # A fact the connection does not have (no pin, no DANE: nothing "checked") is left out,
    # not shown as Python's None.
    assert "None" not in r.stdout and "tls checked" not in r.stdout
    assert "AUTH is offered only after STARTTLS" in r.stdout
    r = run_cli("probe", f"127.0.0.1:{starttls_server.port}", "--cafile", certs.ca_file, "--json")
    out = json.loads(r.stdout)
    assert out["plain"]["auth_mechanisms"] == []
    assert set(out["tls"]["auth_mechanisms"]) >= {"PLAIN", "LOGIN"}
    assert out["tls"]["tls"]["names"]


def test_probe_shows_the_certificate_chain(starttls_server: TLSServer, certs: Certs) -> None:
    r = run_cli("probe", f"127.0.0.1:{starttls_server.port}", "--cafile", certs.ca_file, "--json")
    leaf, root = json.loads(r.stdout)["tls"]["tls"]["chain"]
    assert leaf["issuer"] == root["subject"] == root["issuer"]  # trustme's self-signed CA
    assert leaf["subject"] != root["subject"] and leaf["not_before"] and root["not_after"]
    r = run_cli("probe", f"127.0.0.1:{starttls_server.port}", "--cafile", certs.ca_file)
    assert "certificate 0: " in r.stdout and "certificate 1: " in r.stdout


def test_probe_submission_labels_phases_without_false_alarms(
    starttls_server: TLSServer, certs: Certs
) -> None:
    """submission:// asks for STARTTLS: what was seen after it is not 'before TLS'."""
    url = f"submission://127.0.0.1:{starttls_server.port}"
    for extra in ((), ("--tls", "starttls")):
        r = run_cli("probe", url, "--cafile", certs.ca_file, *extra, "--json")
        assert r.status == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["tls_phase"] == "after STARTTLS"
        assert out["plain"]["tls"] is None and "STARTTLS" in out["plain"]["extensions"]
        assert out["tls"]["tls"]["verified"] is True
        text = " ".join(out["diagnoses"])
        assert "no STARTTLS" not in text and "without any encryption" not in text


def test_probe_logs_in_after_starttls(starttls_server: TLSServer, certs: Certs) -> None:
    """AUTH offered only after STARTTLS: probe logs in there, as send does."""
    args = ("probe", f"127.0.0.1:{starttls_server.port}", "--cafile", certs.ca_file)
    login = ("-u", USER, "--password-env", "PW")
    r = run_cli(*args, *login, "--json", environ={"PW": PASSWORD})
    assert r.status == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["auth"] == {"user": USER, "accepted": True}
    r = run_cli(*args, *login, environ={"PW": PASSWORD})
    assert f"AUTH:       accepted for {USER}" in r.stdout
    r = run_cli(*args, *login, environ={"PW": "wrong"})
    assert r.status == exits.EX_NOPERM, r.stdout
    no_secret(r.stdout, r.stderr)


def test_probe_implicit_tls_is_one_phase(certs: Certs) -> None:
    with TLSServer(implicit=certs.server_context()) as server:
        r = run_cli("probe", f"smtps://127.0.0.1:{server.port}", "--cafile", certs.ca_file)
    assert r.status == 0, r.stdout + r.stderr
    assert "implicit TLS:" in r.stdout and "before TLS" not in r.stdout
    assert "no STARTTLS" not in r.stdout


def test_probe_smtps_against_plain_port(smtpd: RecordingServer) -> None:
    r = run_cli("probe", f"smtps://127.0.0.1:{smtpd.port}", "--timeout", "5")
    assert r.status == exits.EX_UNAVAILABLE, r.stdout
    assert "speaks plain SMTP on this port" in r.stdout


def test_probe_certificate_for_another_name(certs: Certs) -> None:
    other = certs.ca.issue_cert("mail.example.org")
    with TLSServer(implicit=certs.server_context(other)) as server:
        r = run_cli("probe", f"smtps://127.0.0.1:{server.port}", "--cafile", certs.ca_file)
    assert r.status == exits.EX_UNAVAILABLE, r.stdout
    assert "certificate is for another name" in r.stdout


def test_failing_password_command_exits_78(starttls_server: TLSServer, certs: Certs) -> None:
    r = run_cli(
        "send",
        "--port",
        str(starttls_server.port),
        "--cafile",
        certs.ca_file,
        "--user",
        USER,
        "--password-command",
        "echo oops-not-a-password; exit 3",
        *MSG,
    )
    assert r.status == exits.EX_CONFIG, r.stderr
    assert "password command failed" in r.stderr and "oops" not in r.stderr
    assert starttls_server.messages == []


def test_handshake_cut_by_the_network_exits_75() -> None:
    """75 is "try later" for a lost connection or a timeout (sendmail's callers
    queue the message); a handshake cut short is one, not a TLS refusal (69)."""
    from support.hostile.scripted import ScriptedServer, close, ehlo_reply, expect, send

    hello = [expect(b"EHLO"), send(ehlo_reply([b"STARTTLS"])), expect(b"STARTTLS")]
    with ScriptedServer([*hello, send(b"220 go\r\n"), close()]) as server:
        r = run_cli("send", "--port", str(server.port), "--tls", "starttls", *MSG)
    assert r.status == exits.EX_TEMPFAIL, (r.status, r.stderr)
    assert "TLS handshake" in r.stderr and "connection was lost" in r.stderr
