"""``--oauth-token-command`` and the account's ``oauth_token_command``, through
the real console script against Node's smtp-server (XOAUTH2 over STARTTLS):
the token reaches the server, and the command runs for each connection."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpmail.cli import exits
from support.clirun import console_script
from support.nodeserver import NodeSMTPServer
from support.tlsservers import USER, Certs

TOKEN = "ya29.a0AfH6SMBx-cli-token"
ENVELOPE = ("--from", "a@example.org", "--to", "b@example.org", "--subject", "s", "--body", "x")


@pytest.fixture
def node(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSMTPServer]:
    cert, key = certs.leaf_files(tmp_path_factory.mktemp("leaf"))
    with NodeSMTPServer(cert, key, tokens={USER: TOKEN}) as server:
        yield server


def smtpmail(*argv: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [console_script(), *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **environ},
    )


def token_command(counter: Path) -> str:
    """Counts its runs in ``counter``, prints the token (from the environment)."""
    return f'echo run >> "{counter}"; printf "%s\\n" "$CLI_TOKEN"'


def test_token_command_runs_on_each_connection(
    node: NodeSMTPServer, certs: Certs, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    argv = (
        "send",
        "--server",
        f"submission://127.0.0.1:{node.port}",
        "--cafile",
        certs.ca_file,
        "-u",
        USER,
        "--oauth-token-command",
        token_command(counter),
        *ENVELOPE,
    )
    for sent in (1, 2):
        done = smtpmail(*argv, environ={"CLI_TOKEN": TOKEN})
        assert done.returncode == 0, done.stderr
        assert counter.read_text().splitlines() == ["run"] * sent  # once per connection
        assert TOKEN not in done.stdout + done.stderr
    node.settle()
    assert [(a["method"], a["username"], a["ok"]) for a in node.auths] == [
        ("XOAUTH2", USER, True)
    ] * 2
    assert len(node.messages) == 2


def test_account_oauth_token_command(node: NodeSMTPServer, certs: Certs, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[accounts.gmail]\nserver = "submission://127.0.0.1:{node.port}"\n'
        f'user = "{USER}"\nca_file = "{certs.ca_file}"\n'
        f"oauth_token_command = '{token_command(counter)}'\n"
    )
    done = smtpmail(
        "send", "--config", str(config), "-a", "gmail", *ENVELOPE, environ={"CLI_TOKEN": TOKEN}
    )
    assert done.returncode == 0, done.stderr
    node.settle()
    assert [a["ok"] for a in node.auths] == [True]
    assert counter.read_text() == "run\n"


def test_wrong_token_exits_77(node: NodeSMTPServer, certs: Certs, tmp_path: Path) -> None:
    done = smtpmail(
        "send",
        "--server",
        f"submission://127.0.0.1:{node.port}",
        "--cafile",
        certs.ca_file,
        "-u",
        USER,
        "--oauth-token-command",
        token_command(tmp_path / "runs"),
        *ENVELOPE,
        environ={"CLI_TOKEN": "expired-token"},
    )
    assert done.returncode == exits.EX_NOPERM, done.stderr
    node.settle()
    assert node.messages == [] and "expired-token" not in done.stderr


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        ("echo secret-ish-output; exit 3", "the OAuth token command failed with status 3"),
        ("true", "the OAuth token command printed nothing"),
    ],
)
def test_failing_token_command_exits_78(
    node: NodeSMTPServer, certs: Certs, command: str, complaint: str
) -> None:
    done = smtpmail(
        "send",
        "--server",
        f"submission://127.0.0.1:{node.port}",
        "--cafile",
        certs.ca_file,
        "-u",
        USER,
        "--oauth-token-command",
        command,
        *ENVELOPE,
        environ={},
    )
    assert done.returncode == exits.EX_CONFIG, done.stderr
    assert complaint in done.stderr and "secret-ish" not in done.stderr
    node.settle()
    assert node.messages == []


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (("--password-env", "PW"), "not both"),
        (("--user", ""), "without --user"),
    ],
)
def test_token_command_misuse_is_a_usage_error(extra: tuple[str, ...], complaint: str) -> None:
    from support.clirun import run_cli

    argv = ["send", "--host", "127.0.0.1", "-u", USER, "--oauth-token-command", "true", *ENVELOPE]
    if extra[0] == "--user":
        argv.remove("-u")
        argv.remove(USER)
    else:
        argv.extend(extra)
    r = run_cli(*argv, environ={"PW": "x"})
    assert r.status == exits.EX_USAGE
    assert complaint in r.stderr
