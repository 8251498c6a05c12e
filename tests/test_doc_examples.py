"""The documentation's examples run as printed, against real servers.

Every page under docs/ is read. A code block runs when its title names the
server it was written for (the reader sees the title, and what to start):

- ``smtpmail`` (docs/coming-from.md) and ``with smtpmail sink running`` (the
  guide pages): a plain capture server on 127.0.0.1:1025, the one
  ``smtpmail sink`` runs (aiosmtpd here, recording what it receives);
- ``smtpmail, TLS and AUTH``: localhost:1025, STARTTLS required, a login
  ``me@example.org``/``secret``, its CA in ``ca.pem``, and coming-from's TOML
  account as the configuration file of shell blocks.

Python blocks run with ``exec``; shell blocks with ``bash -euo pipefail`` and the
installed console scripts. Both run in a folder holding ``ca.pem``, ``mail.eml``,
``report.pdf``, ``logo.png`` and ``dkim.pem`` (an Ed25519 key), plus the files
the page itself shows in blocks titled with a file's name (``letter.eml``,
``people.csv``), with the outbox and configuration folders (XDG) inside it.
Each block must succeed and deliver at least one message, unless every command
in it only looks (``probe``, ``--dry-run``, ``--quit-after``), when it must
deliver none; and every recipient the server got must be one the block, or a
file it reads, names. Blocks without such a title (a real relay, DNS, a proxy)
are not run.
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
from typing import NamedTuple

import pytest

from support.servers import RecordingServer, fixed_port
from support.tlsservers import Certs, TLSServer, authenticator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PORT = 1025  # the examples name it
PLAIN, TLS_AUTH = "plain", "tls-auth"
#: A block's title -> the server it runs against.
SERVERS = {
    "smtpmail": PLAIN,
    "with smtpmail sink running": PLAIN,
    "smtpmail, TLS and AUTH": TLS_AUTH,
}
BLOCK = re.compile(r'^```(\w+) title="([^"]*)"\n(.*?)^```', flags=re.S | re.M)
PAGE_FILE = re.compile(r"[\w-]+\.(eml|csv)")
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: Options after which a command only looks: nothing is delivered.
LOOKS_ONLY = ("--dry-run", "--quit-after", "--queue-only")


class Block(NamedTuple):
    page: str  # relative to docs/
    language: str
    title: str
    code: str
    line: int

    @property
    def server(self) -> str:
        return SERVERS[self.title]


def page_blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(
            str(page.relative_to(DOCS)),
            found.group(1),
            found.group(2),
            found.group(3),
            text.count("\n", 0, found.start()) + 1,
        )
        for found in BLOCK.finditer(text)
    ]


ALL_BLOCKS = [block for page in sorted(DOCS.rglob("*.md")) for block in page_blocks(page)]
RUNNABLE = [b for b in ALL_BLOCKS if b.title in SERVERS and b.language in ("python", "sh")]


def page_files(page: str) -> dict[str, str]:
    """The files a page shows in blocks titled with their name."""
    return {b.title: b.code for b in ALL_BLOCKS if b.page == page and PAGE_FILE.fullmatch(b.title)}


def config_block() -> str:
    (found,) = [b.code for b in ALL_BLOCKS if b.page == "coming-from.md" and b.language == "toml"]
    return found


def test_the_pages_have_runnable_examples() -> None:
    """A lost title would silently stop a page's examples from running."""
    by_page: dict[str, set[tuple[str, str]]] = {}
    for block in RUNNABLE:
        by_page.setdefault(block.page, set()).add((block.language, block.server))
    assert by_page == {
        "coming-from.md": {
            ("python", PLAIN),
            ("python", TLS_AUTH),
            ("sh", PLAIN),
            ("sh", TLS_AUTH),
        },
        "index.md": {("python", PLAIN)},
        "guide/library.md": {("python", PLAIN)},
        "guide/compose.md": {("python", PLAIN)},
        "guide/errors.md": {("python", PLAIN)},
        "guide/dkim.md": {("python", PLAIN)},
        "guide/command-line.md": {("sh", PLAIN)},
        "guide/outbox.md": {("python", PLAIN), ("sh", PLAIN)},
        "json.md": {("sh", PLAIN)},
    }
    coming_from = [b for b in RUNNABLE if b.page == "coming-from.md"]
    assert len(coming_from) >= 10
    for tool in ("smtplib", "aiosmtplib", "msmtp", "swaks"):  # what they are compared with
        assert any(b.title == tool for b in ALL_BLOCKS if b.page == "coming-from.md"), tool
    assert page_files("guide/outbox.md").keys() == {"letter.eml", "people.csv"}


class Folder:
    """The examples' working folder: the files they read, the configuration file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.certs = Certs(path)  # writes ca.pem; the server's certificate names localhost
        assert Path(self.certs.ca_file) == path / "ca.pem"
        (path / "mail.eml").write_bytes(
            b"From: me@example.org\r\nTo: bob@example.org\r\nSubject: saved\r\n\r\nsaved\r\n"
        )
        (path / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
        (path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        (path / "dkim.pem").write_bytes(_dkim_key())
        (path / "config.toml").write_text(config_block())

    def files_for(self, block: Block) -> str:
        """Write the page's own files; return the text of every file the block may read."""
        for name, text in page_files(block.page).items():
            (self.path / name).write_text(text)
        return "\n".join(
            p.read_text(errors="replace")
            for p in self.path.iterdir()
            if p.suffix in (".eml", ".csv")
        )

    @contextlib.contextmanager
    def server(self, block: Block) -> Iterator[RecordingServer]:
        """The server the block's title names, on 127.0.0.1:1025."""
        with fixed_port(PORT):
            if block.server == PLAIN:
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


def _dkim_key() -> bytes:
    """What ``openssl genpkey -algorithm ed25519`` writes (PKCS #8 PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return Folder(tmp_path_factory.mktemp("doc-examples"))


def delivers(block: Block) -> bool:
    """Whether some command of the block sends mail, rather than only looking."""
    if block.language == "python":
        return True
    logical = re.sub(r"\\\n", " ", block.code)
    commands = [line.split(" #")[0] for line in logical.splitlines() if "smtpmail" in line]
    return any(
        re.search(r"smtpmail(-sendmail| sendmail| send| merge| queue run)\b", command)
        and not any(option in command for option in LOOKS_ONLY)
        for command in commands
    )


def _id(block: Block) -> str:
    return f"{block.page}:{block.line}"


@pytest.mark.parametrize("block", RUNNABLE, ids=[_id(b) for b in RUNNABLE])
def test_example_runs_as_printed(
    block: Block, folder: Folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readable = block.code + folder.files_for(block)
    monkeypatch.chdir(folder.path)
    where = f"docs/{block.page}, line {block.line}"
    with folder.server(block) as server:
        if block.language == "python":
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(block.code, where, "exec"), {"__name__": "__main__"})
        else:
            done = run_shell(block, folder, tmp_path)
            assert done.returncode == 0, f"{where}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    recipients = {r for m in server.messages for r in m.rcpt_tos}
    if delivers(block):
        assert server.messages, f"{where}: nothing was delivered"
    else:
        assert not server.messages, f"{where}: only looks, yet delivered"
    assert recipients <= set(ADDRESS.findall(readable)), where


def run_shell(block: Block, folder: Folder, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SMTPMAIL_")}
    env = {
        **keep,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no account but the page's
        "XDG_DATA_HOME": str(tmp_path / "data"),  # the outbox: one for each block
    }
    if block.server == TLS_AUTH:  # the page's account, as if in ~/.config/smtpmail/config.toml
        env["SMTPMAIL_CONFIG"] = str(folder.path / "config.toml")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=folder.path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
