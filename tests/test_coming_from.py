"""docs/coming-from.md tells the truth: each smtpmail equivalent runs as printed.

Every code block titled ``smtpmail`` (a plain server on 127.0.0.1:1025) or
``smtpmail, TLS and AUTH`` (localhost:1025, STARTTLS required, a login
``me@example.org``/``secret``, its CA in ``ca.pem``) is run against a real aiosmtpd
server started here: Python blocks with ``exec``, shell blocks with bash and the
installed console scripts, in a folder holding ``ca.pem``, ``mail.eml`` and
``report.pdf``, with the page's TOML account as the configuration file. Each
must succeed and, unless it stops before the data (``--quit-after``) or only
looks (``probe``), deliver at least one message. The other tools' blocks are
not run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import RecordingServer, fixed_port
from support.tlsservers import Certs, TLSServer, authenticator

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs/coming-from.md").read_text(encoding="utf-8")
PORT = 1025  # the page's examples name it
PLAIN, TLS_AUTH = "smtpmail", "smtpmail, TLS and AUTH"
BLOCK = re.compile(r'```(\w+) title="([^"]*)"\n(.*?)```', flags=re.S)


def blocks(language: str) -> list[tuple[str, str]]:
    """(title, code) of the page's runnable smtpmail blocks in ``language``."""
    return [
        (title, code)
        for lang, title, code in BLOCK.findall(PAGE)
        if lang == language and title in (PLAIN, TLS_AUTH)
    ]


def config_block() -> str:
    (found,) = [code for lang, title, code in BLOCK.findall(PAGE) if lang == "toml"]
    return found


def test_the_page_has_examples_of_each_kind() -> None:
    titles = {title for title, _ in blocks("python") + blocks("sh")}
    assert titles == {PLAIN, TLS_AUTH}
    assert len(blocks("python")) >= 5
    assert len(blocks("sh")) >= 5
    for tool in ("smtplib", "aiosmtplib", "msmtp", "swaks"):
        assert f'title="{tool}"' in PAGE, tool


class Folder:
    """The examples' working folder: ca.pem, mail.eml, report.pdf, config.toml."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.certs = Certs(path)  # writes ca.pem; the server's certificate names localhost
        assert Path(self.certs.ca_file) == path / "ca.pem"
        (path / "mail.eml").write_bytes(
            b"From: me@example.org\r\nTo: bob@example.org\r\nSubject: saved\r\n\r\nsaved\r\n"
        )
        (path / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
        (path / "config.toml").write_text(config_block())

    @contextlib.contextmanager
    def server(self, title: str) -> Iterator[RecordingServer]:
        """The server the block's title names, on 127.0.0.1:1025."""
        with fixed_port(PORT):
            if title == PLAIN:
                with RecordingServer(port=PORT) as server:
                    yield server
                return
            with TLSServer(
                port=PORT,
                tls_context=self.certs.server_context(),
                require_starttls=True,
                authenticator=authenticator("me@example.org", "secret"),
                auth_required=True,
            ) as tls_server:
                yield tls_server


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return Folder(tmp_path_factory.mktemp("coming-from"))


@pytest.fixture
def in_folder(folder: Folder) -> Iterator[Folder]:
    before = Path.cwd()
    os.chdir(folder.path)
    try:
        yield folder
    finally:
        os.chdir(before)


def _ids(found: list[tuple[str, str]]) -> list[str]:
    return [f"{i}-{code.strip().splitlines()[-1][:40]}" for i, (_, code) in enumerate(found)]


@pytest.mark.parametrize(("title", "code"), blocks("python"), ids=_ids(blocks("python")))
def test_python_example_runs(title: str, code: str, in_folder: Folder) -> None:
    printed = io.StringIO()
    with in_folder.server(title) as server, contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/coming-from.md", "exec"), {"__name__": "__main__"})
    assert server.messages, code
    assert all(m.rcpt_tos == ["bob@example.org"] for m in server.messages)


@pytest.mark.parametrize(("title", "code"), blocks("sh"), ids=_ids(blocks("sh")))
def test_shell_example_runs(title: str, code: str, in_folder: Folder) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "SMTPMAIL_CONFIG"},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_CONFIG_HOME": str(in_folder.path / "no-config"),
    }
    if title == TLS_AUTH:  # the page's account, as if in ~/.config/smtpmail/config.toml
        env["SMTPMAIL_CONFIG"] = str(in_folder.path / "config.toml")
    with in_folder.server(title) as server:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=in_folder.path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, f"{code}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    if "--quit-after" in code or "smtpmail probe" in code:
        assert not server.messages
    else:
        assert server.messages, code
        assert all(m.rcpt_tos == ["bob@example.org"] for m in server.messages)
