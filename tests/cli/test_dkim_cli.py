"""DKIM on the command line: ``send --dkim-selector --dkim-domain --dkim-key``, an
account's ``dkim = { selector, domain, key_file }`` (``send``, ``queue``, and
``smtpmail-sendmail`` in a subprocess); dkimpy verifies what aiosmtpd received."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from smtpmail.message.dkim import DKIMKey
from support.clirun import run_cli, sendmail_cmd
from support.dkimcheck import ALGORITHMS, DOMAIN, MESSAGES, SELECTOR, key_file, make_key, verify
from support.servers import RecordingServer


def srv(server: RecordingServer) -> str:
    return f"--server=smtp://{server.host}:{server.port}"


def flags(pem: Path) -> list[str]:
    return ["--dkim-selector", SELECTOR, "--dkim-domain", DOMAIN, "--dkim-key", str(pem)]


def check(received: bytes, key: DKIMKey) -> None:
    assert verify(received, key), received[:400]
    assert b"blind" not in received


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_send_message_file_with_dkim_flags(
    smtpd: RecordingServer, tmp_path: Path, algorithm: str
) -> None:
    key = make_key(tmp_path, algorithm)
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGES["bcc"])
    r = run_cli("send", srv(smtpd), "--message", str(eml), *flags(key_file(tmp_path, algorithm)))
    assert r.status == 0, r.stderr
    (got,) = smtpd.messages
    check(got.content, key)
    assert got.content.startswith(b"DKIM-Signature: v=1; a=" + algorithm.encode())


def test_send_composed_from_options(smtpd: RecordingServer, tmp_path: Path) -> None:
    key = make_key(tmp_path, "ed25519-sha256")
    argv = ["send", srv(smtpd), "--from", "ann@example.org", "--to", "bob@example.net"]
    argv += ["--subject", "Grüße", "--body", "crème brûlée\n\n\n"]
    r = run_cli(*argv, *flags(key_file(tmp_path, "ed25519-sha256")))
    assert r.status == 0, r.stderr
    check(smtpd.messages[0].content, key)


def test_dkim_flags_go_together_and_a_bad_key_stops_before_sending(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGES["plain"])
    base = ["send", srv(smtpd), "--message", str(eml)]
    r = run_cli(*base, "--dkim-selector", "s", "--dkim-domain", "example.org")
    assert r.status == 64 and "go together" in r.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    r = run_cli(
        *base, "--dkim-selector", "s", "--dkim-domain", "example.org", "--dkim-key", str(bad)
    )
    assert r.status != 0 and "PEM" in r.stderr
    assert smtpd.messages == []


def test_a_dry_run_loads_the_key_the_send_would(tmp_path: Path) -> None:
    """``--dry-run`` said all was well (0) where the send itself stopped on an
    unreadable or malformed key (66, 65): a cron job checked with it failed
    at its first real run. It loads the key as the send does (the signature
    itself is made at sending time, after any 8-bit conversion: not shown)."""
    base = ["send", "--dry-run", "--from", "a@example.org", "--to", "b@example.org"]
    base += ["--body", "x", "--dkim-selector", SELECTOR, "--dkim-domain", DOMAIN]
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for key, status in ((tmp_path / "missing.pem", 66), (bad, 65)):
        dry = run_cli(*base, "--dkim-key", str(key))
        real = run_cli(*[a for a in base if a != "--dry-run"], "--dkim-key", str(key))
        assert (dry.status, real.status) == (status, status), (dry.stderr, real.stderr)
        assert dry.stdout == ""
    make_key(tmp_path, "ed25519-sha256")
    good = run_cli(*base, "--dkim-key", str(key_file(tmp_path, "ed25519-sha256")))
    assert good.status == 0, good.stderr
    assert "From: a@example.org" in good.stdout


def _config(tmp_path: Path, smtpd: RecordingServer, dkim: str) -> Path:
    conf = tmp_path / "config.toml"
    conf.write_text(
        'default = "work"\n[accounts.work]\n'
        f'server = "smtp://{smtpd.host}:{smtpd.port}"\nfrom = "ann@example.org"\n{dkim}\n'
    )
    return conf


def test_account_dkim_table_send_and_queue(smtpd: RecordingServer, tmp_path: Path) -> None:
    key = make_key(tmp_path, "rsa-sha256")
    table = (
        f'dkim = {{ selector = "{SELECTOR}", domain = "{DOMAIN}", '
        f'key_file = "{key_file(tmp_path, "rsa-sha256")}" }}'
    )
    conf = _config(tmp_path, smtpd, table)
    eml = tmp_path / "m.eml"
    eml.write_bytes(MESSAGES["folded-headers"])
    r = run_cli("send", "--config", str(conf), "--message", str(eml))
    assert r.status == 0, r.stderr
    queue = ["queue", "--queue-dir", str(tmp_path / "q")]
    r = run_cli(*queue, "add", "bob@example.net", stdin=MESSAGES["8bit"])
    assert r.status == 0, r.stderr
    stored = [p.read_bytes() for p in (tmp_path / "q").rglob("*.eml")]
    assert stored and all(b"DKIM-Signature" not in s for s in stored)
    r = run_cli(*queue, "run", "--config", str(conf))
    assert r.status == 0, r.stderr
    sent, queued = smtpd.messages
    check(sent.content, key)
    check(queued.content, key)  # signed at send time; the stored message stays as it was


@pytest.mark.parametrize(
    "table",
    [
        'dkim = "sel"',
        'dkim = { selector = "s", domain = "example.org" }',
        'dkim = { selector = "s", domain = "example.org", key_file = 3 }',
    ],
)
def test_bad_account_dkim_table_is_a_config_error(
    smtpd: RecordingServer, tmp_path: Path, table: str
) -> None:
    conf = _config(tmp_path, smtpd, table)
    r = run_cli("send", "--config", str(conf), "--to", "b@example.net", "--body", "x")
    assert r.status == 78 and "dkim" in r.stderr
    assert smtpd.messages == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_smtpmail_sendmail_with_the_accounts_dkim(
    smtpd: RecordingServer, tmp_path: Path, algorithm: str
) -> None:
    key = make_key(tmp_path, algorithm)
    table = (
        f'dkim = {{ selector = "{SELECTOR}", domain = "{DOMAIN}", '
        f'key_file = "{key_file(tmp_path, algorithm)}" }}'
    )
    conf = _config(tmp_path, smtpd, table)
    env = {**os.environ, "SMTPMAIL_CONFIG": str(conf)}
    for name in ("bcc", "trailing-blank-lines", "lf-endings"):
        done = subprocess.run(
            [*sendmail_cmd(tmp_path), "-t"],
            input=MESSAGES[name],
            capture_output=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert done.returncode == 0, done.stderr
    assert len(smtpd.messages) == 3
    for got in smtpd.messages:
        check(got.content, key)
