"""The README tells the truth: its quick start and its library example work,
and its links lead somewhere. The library guide (docs/guide/library.md) opens
with the same example, checked the same way."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from support.servers import RecordingServer, fixed_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
LIBRARY_GUIDE = (ROOT / "docs/guide/library.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the README section headed ``## title``, up to the next one."""
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}(?: [^\n]*)?\n(.*?)```", text, flags=re.S)


def test_quick_start_is_two_commands_that_exist() -> None:
    block = code_blocks(section("Quick start"), "sh")[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    for command in commands:
        assert (ROOT / command.split()[1]).is_file()
    assert "exec .venv/bin/smtpmail demo" in (ROOT / "scripts/demo.sh").read_text()
    assert "bash scripts/test.sh" in (ROOT / ".ci/run").read_text()


@pytest.mark.parametrize(
    ("where", "text"),
    [("README.md", section("The library")), ("docs/guide/library.md", LIBRARY_GUIDE)],
)
def test_library_example_sends_through_a_real_server(where: str, text: str) -> None:
    example = code_blocks(text, "python")[0]
    printed = io.StringIO()
    with (
        fixed_port(1025),  # the example uses the assignment's address
        RecordingServer(port=1025) as server,
        contextlib.redirect_stdout(printed),
    ):
        exec(compile(example, where, "exec"), {})
    subjects = [m.content.split(b"\r\n")[0] for m in server.messages]
    assert subjects == [b"Subject: hello", b"Subject: one", b"Subject: two"]
    assert all(m.rcpt_tos == ["bob@example.org"] for m in server.messages)
    assert printed.getvalue().startswith("['bob@example.org']\n")
    assert "client QUIT\n" in printed.getvalue()


def test_every_relative_link_leads_to_a_file_or_heading() -> None:
    """The README's links into docs/ (its details live there now) must not dangle."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", README)
    local = [(path, anchor) for path, anchor in links if "://" not in path]
    assert len(local) >= 15
    for path, anchor in local:
        target = ROOT / path
        assert target.is_file(), path
        if anchor:
            headings = re.findall(r"^#+ (.*)$", target.read_text(encoding="utf-8"), flags=re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{path}#{anchor}"


#: The options issue 14 added for swaks and msmtp users: the README's own
#: command-line examples show each one (its details are in docs/).
NEW_CLI_OPTIONS = (
    "-4", "-6", "--source-address", "--quit-after", "--fingerprint", "--data", "--header",
    "--logfile", "--syslog", "--read-envelope-from", "--convert-8bit", "--data-timeout",
    "--oauth-token-command", "--show-data-lines",
)  # fmt: skip


@pytest.mark.parametrize("option", NEW_CLI_OPTIONS)
def test_the_command_line_section_shows_the_new_options(option: str) -> None:
    from support.clirun import run_cli

    examples = "\n".join(code_blocks(section("The command line"), "sh"))
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", examples), option
    # ... and each is an option the program really takes.
    helps = run_cli("send", "--help").stdout + run_cli("sendmail", "--help").stdout
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helps), option
