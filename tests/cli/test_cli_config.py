"""Config accounts (TOML at the XDG path), the transcript renderer, and exit-status mapping."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from smtpmail import errors
from smtpmail.cli import exits
from smtpmail.cli.environment import Environment
from smtpmail.cli.server import ServerSettings, password_source
from smtpmail.cli.transcript import TranscriptPrinter
from smtpmail.protocol.reply import Reply
from support.clirun import CLIResult, run_cli
from support.servers import RecordingServer
from support.tlsservers import PASSWORD, USER, TLSServer, authenticator

#: The envelope and a one-line body, for the sends these tests make.
ONE_LINE = ("--from", "a@example.org", "--to", "b@example.org", "--body", "x")


def write_config(directory: Path, text: str, mode: int = 0o600) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def accounts(port: int) -> str:
    return f"""
default = "local"

[accounts.local]
host = "127.0.0.1"
port = {port}
from = "Default Sender <default@example.org>"
ehlo_name = "client.example.org"

[accounts.other]
server = "smtp://127.0.0.1:1"
from = "other@example.org"
"""


def test_default_account_from_xdg_path(smtpd: RecordingServer, tmp_path: Path) -> None:
    write_config(tmp_path / "smtpmail", accounts(smtpd.port))
    r = run_cli("send", "--to", "you@example.net", "--body", "x", config_dir=tmp_path / "smtpmail")
    assert r.status == 0, r.stderr
    assert smtpd.messages[0].mail_from == "default@example.org"
    assert b"EHLO client.example.org" in smtpd.commands()


def test_account_option_picks_another(smtpd: RecordingServer, tmp_path: Path) -> None:
    write_config(tmp_path, accounts(smtpd.port))
    # "other" points at port 1, where nothing listens: the choice is visible in the failure.
    r = run_cli(
        "send", "--account", "other", "--to", "y@example.net", "--body", "x", config_dir=tmp_path
    )
    assert r.status == exits.EX_TEMPFAIL
    assert "127.0.0.1:1" in r.stderr
    # ...and the command line wins over the account.
    r = run_cli(
        "send",
        "--account",
        "other",
        "--port",
        str(smtpd.port),
        "--to",
        "y@example.net",
        "--body",
        "x",
        config_dir=tmp_path,
    )
    assert r.status == 0, r.stderr
    assert smtpd.messages[0].mail_from == "other@example.org"


@pytest.mark.parametrize(
    "named",
    [["--server", "smtp://127.0.0.1:{port}"], ["--host", "127.0.0.1", "--port", "{port}"]],
    ids=["server", "host"],
)
def test_a_server_named_on_the_command_line_gets_no_accounts_credentials(
    tmp_path: Path, named: list[str]
) -> None:
    """The default account's login went to whatever server the command line named
    (``send -s other.example``): its password to another operator's server. Such
    a server is used with the command line's settings alone, as msmtp's --host is;
    ``--account`` still brings the account there, on purpose."""
    with TLSServer(authenticator=authenticator(), auth_require_tls=False) as server:
        write_config(
            tmp_path,
            f"""
default = "work"
[accounts.work]
server = "smtp://127.0.0.1:1"
user = "{USER}"
password_env = "WORK_PASSWORD"
from = "me@work.example"
tls = "opportunistic"
""",
        )
        where = [part.format(port=server.port) for part in named]
        send = ["send", *where, "--to", "b@example.org", "--body", "x"]
        environ = {"WORK_PASSWORD": PASSWORD}
        r = run_cli(*send, "--from", "a@example.org", config_dir=tmp_path, environ=environ)
        assert r.status == 0, r.stderr
        assert not [c for c in server.commands() if c.upper().startswith(b"AUTH")]
        assert server.messages[-1].mail_from == "a@example.org"
        # Without --from, the account's From is not taken either: no sender (64).
        r = run_cli(*send, config_dir=tmp_path, environ=environ)
        assert r.status == exits.EX_USAGE, r.stderr
        # Named with --account, the account goes there: its login, its From.
        r = run_cli(*send, "--account", "work", config_dir=tmp_path, environ=environ)
        assert r.status == 0, r.stderr
        assert [c for c in server.commands() if c.upper().startswith(b"AUTH")]
        assert server.messages[-1].mail_from == "me@work.example"


def test_config_from_environment_variable(smtpd: RecordingServer, tmp_path: Path) -> None:
    path = write_config(tmp_path / "elsewhere", accounts(smtpd.port))
    r = run_cli(
        "send", "--to", "you@example.net", "--body", "x", environ={"SMTPMAIL_CONFIG": str(path)}
    )
    assert r.status == 0, r.stderr


@pytest.mark.parametrize(
    "text",
    [
        "this is not toml [",
        'default = "missing"\n[accounts.a]\nhost = "h"\n',
        '[accounts.a]\nhost = "h"\nbogus_key = 1\n',
        '[accounts.a]\ntls = "sometimes"\n',
        '[accounts.a]\nport = "25"\n',
    ],
)
def test_bad_config_exits_78(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    r = run_cli(
        "send",
        *ONE_LINE,
        config_dir=tmp_path,
    )
    assert r.status == exits.EX_CONFIG == 78, r.stderr


def test_missing_explicit_config_exits_78(tmp_path: Path) -> None:
    r = run_cli(
        "send",
        "--config",
        str(tmp_path / "nope.toml"),
        *ONE_LINE,
    )
    assert r.status == exits.EX_CONFIG


def _dry_send(config_dir: Path) -> CLIResult:
    """send --dry-run of a one-line message with the config in config_dir."""
    return run_cli(
        "send",
        "-n",
        *ONE_LINE,
        config_dir=config_dir,
    )


def test_clear_text_password_warns_unless_private(tmp_path: Path) -> None:
    text = '[accounts.a]\nhost = "127.0.0.1"\nuser = "u"\npassword = "hunter2"\n'
    write_config(tmp_path, text, mode=0o644)
    r = _dry_send(tmp_path)
    assert "readable by others" in r.stderr and "chmod 600" in r.stderr
    assert "hunter2" not in r.stderr + r.stdout
    write_config(tmp_path, text, mode=0o600)
    r = _dry_send(tmp_path)
    assert "readable by others" not in r.stderr


def test_config_command_hides_passwords(tmp_path: Path) -> None:
    write_config(tmp_path, '[accounts.a]\nhost = "h"\npassword = "hunter2"\n')
    r = run_cli("config", config_dir=tmp_path)
    assert r.status == 0
    assert "hunter2" not in r.stdout and "<hidden>" in r.stdout
    r = run_cli("config", "--path", config_dir=tmp_path)
    assert r.stdout.strip() == str(tmp_path / "config.toml")


def test_password_sources() -> None:
    env = Environment(environ={"PW": "from-env"})
    get = password_source(ServerSettings(user="u", password_env="PW"), env)
    assert get() == "from-env"
    get = password_source(ServerSettings(user="u", password_command="printf 's3cret\\nx'"), env)
    assert get() == "s3cret"
    get = password_source(ServerSettings(user="u", password_command="echo leak; exit 3"), env)
    with pytest.raises(exits.ConfigError) as info:
        get()
    assert "leak" not in str(info.value)  # the command's output may be the secret


def test_password_without_user_is_usage_error() -> None:
    r = run_cli(
        "send",
        "-n",
        "--password-env",
        "X",
        *ONE_LINE,
    )
    assert r.status == exits.EX_USAGE


# -- transcript --------------------------------------------------------------


def test_transcript_redacts_auth() -> None:
    out = io.StringIO()
    t = TranscriptPrinter(out, clock=False)
    t("client", "AUTH PLAIN AGFsaWNlAHNlY3JldA==")
    t("server", "235 2.7.0 ok")
    t("client", "AUTH LOGIN")
    t("server", "334 VXNlcm5hbWU6")
    t("client", "YWxpY2U=")
    t("server", "334 UGFzc3dvcmQ6")
    t("client", "c2VjcmV0")
    t("server", "235 ok")
    t("client", "MAIL FROM:<a@example.org>")
    text = out.getvalue()
    assert "AGFsaWNl" not in text and "YWxpY2U=" not in text and "c2VjcmV0" not in text
    assert text.splitlines() == [
        "C: AUTH PLAIN ****",  # the one redaction marker, as in results and errors
        "S: 235 2.7.0 ok",
        "C: AUTH LOGIN",
        "S: 334 VXNlcm5hbWU6",
        "C: ****",
        "S: 334 UGFzc3dvcmQ6",
        "C: ****",
        "S: 235 ok",
        "C: MAIL FROM:<a@example.org>",
    ]


def test_transcript_limits_message_data() -> None:
    out = io.StringIO()
    t = TranscriptPrinter(out, clock=False, color=True)
    t("data", "".join(f"line {i}\r\n" for i in range(100)))
    t("server", "550 no")
    lines = out.getvalue().splitlines()
    assert len(lines) == 42  # 40 data lines, a count of the rest, the reply
    assert "60 more lines" in lines[40]
    assert lines[41].startswith("\x1b[31m")  # an error reply in red


# -- the exit-status table -----------------------------------------------------


def _reply(code: int) -> Reply:
    return Reply(code, (f"{code // 100}.0.0 text",))


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidAddress("x"), 65),
        (FileNotFoundError("x"), 66),
        (errors.MessageReadError("reading the message failed: EIO"), 66),
        (errors.RecipientsRefused("RCPT", _reply(550), {"a@b.c": _reply(550)}), 67),
        (errors.RecipientsRefused("RCPT", _reply(450), {"a@b.c": _reply(450)}), 75),
        (errors.SenderRefused("MAIL", _reply(553)), 69),
        (errors.TLSError("handshake"), 69),
        (errors.ExtensionNotSupported("SMTPUTF8"), 69),
        (RuntimeError("bug"), 70),
        (errors.ConnectionLost("gone"), 75),
        (errors.RemoteProtocolError("junk"), 76),
        (errors.AuthenticationRefused("AUTH", _reply(535)), 77),
        (errors.AuthenticationRefused("AUTH", _reply(454)), 75),
        (errors.AuthenticationError("no mechanism"), 77),
        (exits.ConfigError("bad"), 78),
        (exits.UsageError("bad"), 64),
    ],
)
def test_exit_status_table(exc: BaseException, status: int) -> None:
    assert exits.exit_status(exc)[0] == status


def test_unknown_host_is_68() -> None:
    err = errors.ConnectError("cannot resolve")
    err.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert exits.exit_status(err)[0] == exits.EX_NOHOST == 68


def test_json_is_valid_even_when_connect_fails(tmp_path: Path) -> None:
    r = run_cli(
        "send",
        "--port",
        "1",
        *ONE_LINE,
        "--json",
    )
    assert r.status == 75
    assert json.loads(r.stdout)["error"]["type"] == "ConnectError"


@pytest.mark.parametrize(
    ("args", "account", "server"),
    [
        # No server named anywhere: the local sink.
        ((), None, "smtp://127.0.0.1:1025"),
        (("--port", "2525"), None, "smtp://127.0.0.1:2525"),
        (("--tls", "none"), None, "smtp://127.0.0.1:1025"),
        # A host named, by any means: its scheme's port.
        (("--host", "mail.example.org"), None, "smtp://mail.example.org:25"),
        (("-s", "mail.example.org"), None, "smtp://mail.example.org:25"),
        (("--host", "mail.example.org", "--tls", "implicit"), None, "smtps://mail.example.org:465"),
        (("-s", "submission://mail.example.org"), None, "submission://mail.example.org:587"),
        (
            ("--host", "mail.example.org", "--tls", "starttls", "-p", "2525"),
            None,
            "submission://mail.example.org:2525",
        ),
        (("-s", "smtps://mail.example.org"), None, "smtps://mail.example.org:465"),
        (("-s", "lmtp://mail.example.org"), None, "lmtp://mail.example.org:24"),
        (("--host", "mail.example.org", "-p", "2525"), None, "smtp://mail.example.org:2525"),
        ((), 'host = "mail.example.org"', "smtp://mail.example.org:25"),
        ((), 'server = "submission://mail.example.org"', "submission://mail.example.org:587"),
        # A host named on the command line takes nothing of the default account.
        (
            ("--host", "other.example"),
            'server = "submission://mail.example.org"',
            "smtp://other.example:25",
        ),
        (
            ("-s", "relay.example"),
            'host = "mail.example.org"\nport = 2525',
            "smtp://relay.example:25",
        ),
    ],
)
def test_one_rule_for_the_default_port(
    tmp_path: Path, args: tuple[str, ...], account: str | None, server: str
) -> None:
    if account is not None:
        write_config(tmp_path, f'default = "a"\n[accounts.a]\n{account}\n')
    r = run_cli("send", "-n", *args, *ONE_LINE, config_dir=tmp_path)
    assert r.status == 0, r.stderr
    assert f"# server: {server}\n" in r.stdout
