"""The command-line reference, rendered from the argparse definitions themselves.

``mkdocs build`` loads this file as a hook (``hooks:`` in mkdocs.yml): a page that
holds the line ``<!-- cli-reference -->`` gets, in its place, every command of
``smtpmail`` with its usage, its options grouped as ``--help`` groups them and its
epilog. Each command's parser is built by the same ``add_arguments`` the CLI
calls, so the reference cannot drift from the program. ``smtpmail sendmail``
parses its own flags: its ``USAGE`` text is shown, then the server options it
takes from ``add_server_arguments``.

Run it alone to print the Markdown: ``python scripts/cli_reference.py``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: This checkout's sources: the reference describes them, not an installed copy.
SRC = str(Path(__file__).resolve().parent.parent / "src")

MARKER = "<!-- cli-reference -->"
#: Wide enough that argparse never wraps a usage line or an epilog table.
WIDTH = 100


def _use_this_checkout() -> None:
    """Import smtpmail from SRC (mkdocs runs hooks with the environment's sys.path,
    where an editable install of another checkout may come first)."""
    if sys.path[:1] != [SRC]:
        sys.path.insert(0, SRC)
    loaded = sys.modules.get("smtpmail")
    if loaded is not None and not str(loaded.__file__).startswith(SRC):
        for name in [n for n in sys.modules if n == "smtpmail" or n.startswith("smtpmail.")]:
            del sys.modules[name]


def command_parsers() -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(command, one-line help, its parser) for every command of ``smtpmail``,
    subcommands (``queue run``) after their parent."""
    _use_this_checkout()
    from smtpmail.cli import COMMANDS

    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        parser = _parser(f"smtpmail {name}", help_text)
        if name == "sendmail":
            from smtpmail.cli.server import add_server_arguments

            add_server_arguments(parser)
        else:
            module.add_arguments(parser)
        yield name, help_text, parser
        yield from _subcommands(name, parser)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    class Wide(argparse.ArgumentParser):
        def _get_formatter(self) -> argparse.HelpFormatter:
            return self.formatter_class(prog=self.prog, width=WIDTH)  # type: ignore[call-arg]

    return Wide(prog=prog, description=description)


def _subcommands(
    name: str, parser: argparse.ArgumentParser
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for sub_name, sub_parser in action.choices.items():
                full = f"{name} {sub_name}"
                yield full, helps.get(sub_name, ""), sub_parser
                yield from _subcommands(full, sub_parser)


def render() -> str:
    """The whole reference, as Markdown."""
    _use_this_checkout()
    from smtpmail.cli.parser import build_parser

    out = ["## smtpmail", "", _fence(_with_width(build_parser([])).format_help()), ""]
    for name, help_text, parser in command_parsers():
        level = "#" * (2 + name.count(" "))
        out += [f"{level} smtpmail {name}", "", _sentence(help_text), ""]
        if name == "sendmail":
            from smtpmail.cli.sendmail import USAGE

            out += [_fence(USAGE), "", "Server options (as `smtpmail send`'s):", ""]
            out += _options(parser, only_groups=True)
            continue
        out += [_fence(parser.format_usage()), ""]
        out += _options(parser)
        if parser.epilog:
            out += [_fence(parser.epilog), ""]
    return "\n".join(out).rstrip() + "\n"


def _with_width(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser._get_formatter = (  # type: ignore[method-assign]
        lambda: parser.formatter_class(prog=parser.prog, width=WIDTH)  # type: ignore[call-arg]
    )
    return parser


def _options(parser: argparse.ArgumentParser, *, only_groups: bool = False) -> list[str]:
    out: list[str] = []
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if a.help is not argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
        ]
        if not actions or (only_groups and group.title in ("options", "positional arguments")):
            continue
        out += [f"**{group.title}**", ""]
        out += [f"- {_signature(a)}: {_help(parser, a)}" for a in actions]
        out.append("")
    return out


def _signature(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    metavar = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper()
    )
    return ", ".join(f"`{s} {metavar}`" for s in action.option_strings)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return "(no description)"
    # What argparse's HelpFormatter._expand_help does: %(default)s, %(prog)s, ...
    params: dict[str, Any] = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = parser.prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    text = action.help % params if "%" in action.help else action.help
    return _sentence(text.replace("|", "\\|"))


def _sentence(text: str) -> str:
    """The help text on one line, as written (argparse's help is not capitalised)."""
    return " ".join(text.split())


def _fence(text: str) -> str:
    return "```text\n" + text.rstrip() + "\n```"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs hook: put the rendered reference where the page asks for it."""
    return markdown.replace(MARKER, render()) if MARKER in markdown else markdown


if __name__ == "__main__":
    sys.stdout.write(render())
