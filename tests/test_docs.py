"""The documentation site: its command-line reference says what ``--help`` says.

The reference page is rendered from the argparse definitions by
scripts/cli_reference.py (an mkdocs hook). These tests compare it with what the
program itself prints for ``smtpmail COMMAND --help``, so a command or an option
the renderer misses (a new subcommand, a group it skips) fails here; the
``mkdocs build --strict`` step of scripts/test.sh checks the links and pages.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from smtpmail.cli import COMMANDS
from support.clirun import run_cli

ROOT = Path(__file__).resolve().parent.parent
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")


def _renderer() -> ModuleType:
    path = ROOT / "scripts/cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_reference"] = module
    spec.loader.exec_module(module)
    return module


cli_reference = _renderer()
REFERENCE = cli_reference.render()


def _options(help_text: str) -> set[str]:
    """The options ``--help`` lists: each line that starts with one, up to its help."""
    found: set[str] = set()
    for line in help_text.splitlines():
        if line.startswith("  ") and line.lstrip().startswith("-"):
            invocation = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            found.update(OPTION.findall(invocation))
    return found - {"-h", "--help"}


def _help(*command: str) -> str:
    result = run_cli(*command, "--help")
    assert result.status == 0, result.stderr
    return result.stdout


def _queue_actions() -> list[str]:
    """The actions ``smtpmail queue --help`` lists under ACTION."""
    listing = _help("queue").split("\n  ACTION\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in listing.splitlines()]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "sendmail"])
def test_every_option_of_every_command_is_in_the_reference(command: str) -> None:
    section = REFERENCE.split(f"\n## smtpmail {command}\n", 1)[1].split("\n## ", 1)[0]
    options = _options(_help(command))
    assert options, command
    missing = sorted(o for o in options if f"`{o}" not in section)
    assert not missing, f"smtpmail {command} --help shows {missing}, the reference does not"


@pytest.mark.parametrize("action", _queue_actions())
def test_every_queue_action_has_its_own_section(action: str) -> None:
    section = REFERENCE.split(f"\n### smtpmail queue {action}\n", 1)[1].split("\n#", 1)[0]
    options = _options(_help("queue", action))
    missing = sorted(o for o in options if f"`{o}" not in section)
    assert not missing, f"smtpmail queue {action} --help shows {missing}, the reference does not"


def test_sendmail_reference_has_its_usage_and_server_options() -> None:
    section = REFERENCE.split("\n## smtpmail sendmail\n", 1)[1].split("\n## ", 1)[0]
    usage = _help("sendmail")
    assert usage.strip() in section
    for option in ("--server", "--account", "--user", "--tls", "--dkim-key", "--data-timeout"):
        assert f"`{option}" in section, option


def test_the_reference_page_asks_for_the_rendered_reference() -> None:
    page = (ROOT / "docs/reference/cli.md").read_text(encoding="utf-8")
    assert cli_reference.MARKER in page
    assert cli_reference.on_page_markdown(page).count("## smtpmail send\n") == 1
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "- scripts/cli_reference.py" in config


def test_license_file_matches_pyproject() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")


def test_sphinx_roles_become_links_to_the_objects() -> None:
    path = ROOT / "scripts/docstring_roles.py"
    spec = importlib.util.spec_from_file_location("docstring_roles", path)
    assert spec and spec.loader
    roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roles)
    html = "see :class:<code>~smtpmail.Client</code> and :meth:<code>send()</code>"
    assert roles.on_page_content(html) == (
        'see <autoref identifier="smtpmail.Client" optional><code>Client</code></autoref>'
        ' and <autoref identifier="send" optional><code>send()</code></autoref>'
    )


def test_the_reference_describes_this_checkout_not_an_installed_copy(tmp_path: Path) -> None:
    """mkdocs runs the hook with the environment's sys.path, where another checkout's
    editable install may come first; the reference must still be this one's."""
    import subprocess

    other = tmp_path / "smtpmail"
    other.mkdir()
    (other / "__init__.py").write_text("raise ImportError('another checkout')\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/cli_reference.py")],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "`--quit-after STAGE`" in done.stdout


def test_the_error_tree_of_the_guide_is_the_class_tree() -> None:
    """docs/guide/errors.md draws the exception classes: each one named under
    another must be its subclass, and every public error must be drawn."""
    import textwrap

    import smtpmail
    from smtpmail import errors

    page = (ROOT / "docs/guide/errors.md").read_text(encoding="utf-8")
    tree = page.split("```text\n", 1)[1].split("```", 1)[0]
    drawing = (errors.__doc__ or "").split("::\n\n", 1)[1].split("\n\n", 1)[0]
    assert tree == textwrap.dedent(drawing) + "\n"  # "as smtpmail.errors draws it"
    parents: list[str] = []
    drawn = set()
    for line in tree.splitlines():
        found = re.match(r"^([│├└─ ]*?)(\w+)\s", line + " ")
        if not found or not found.group(2)[0].isupper():
            continue
        depth = len(found.group(1)) // 4
        name = found.group(2)
        cls = getattr(smtpmail, name)
        if depth:
            assert issubclass(cls, getattr(smtpmail, parents[depth - 1])), (name, parents)
        parents[depth:] = [name]
        drawn.add(name)
    public = {
        n
        for n in errors.__all__
        if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), errors.SMTPError)
    }
    assert len(drawn) >= 20
    assert public - drawn <= {"AuthError"}, public - drawn  # (the old name, deprecated)


def test_the_command_line_guide_lists_the_exit_statuses_send_help_lists() -> None:
    """The guide's sysexits.h list once left out 70 (internal error)."""
    page = (ROOT / "docs/guide/command-line.md").read_text(encoding="utf-8")
    listed = page.split("Exit statuses follow sysexits.h", 1)[1].split(". When", 1)[0]
    in_guide = {int(n) for n in re.findall(r"\b(\d\d)\b", listed)} | {0}
    table = _help("send").split("\nexit status", 1)[1]
    in_help = {int(n) for n in re.findall(r"^  (\d+) ", table, flags=re.M)}
    assert in_help >= {0, 64, 65, 75, 79}
    assert in_guide == in_help, sorted(in_guide ^ in_help)
