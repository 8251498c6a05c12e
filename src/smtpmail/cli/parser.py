"""argparse's side of the command line: the parsers, help, usage errors.

Every command but the one-message ones is parsed here; those are parsed by
:mod:`smtpmail.cli.options` first, and come here only for what it leaves to
argparse (help, abbreviations, errors).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from smtpmail.cli.environment import Environment
from smtpmail.cli.exits import EX_OK, EX_USAGE, ReportedUsageError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import typing

__all__ = ["Parser", "build_parser", "parse"]


def _columns() -> int:
    """``shutil.get_terminal_size().columns``, by the same rules ($COLUMNS, the
    terminal, else 80), without importing shutil: it loads zlib, bz2 and lzma,
    start-up time that every command would pay (argparse asks for a width each
    time an argument is added)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help formatter is given the width (see ``_columns``)."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # HelpFormatter's own default: the terminal's columns less 2.
        # (typeshed's formatter protocol names only prog; every HelpFormatter takes width)
        return self.formatter_class(prog=self.prog, width=_columns() - 2)  # type: ignore[call-arg]

    def error(self, message: str) -> typing.NoReturn:
        """A usage error, said on stderr as argparse says it; then, instead of
        argparse's exit, :func:`smtpmail.cli.main`'s error path (a ``--json``
        document too)."""
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise ReportedUsageError(f"{self.prog}: error: {message}")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    from smtpmail import __version__
    from smtpmail.cli import COMMANDS, import_command

    parser = Parser(
        prog="smtpmail",
        description="Send email over SMTP, see the dialogue, capture mail locally.",
    )
    parser.add_argument("--version", action="version", version=f"smtpmail {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported (a fast start); --help lists all.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    # A command given first gets only its own parser: each parser built costs
    # argparse's gettext look-ups, and the others would only show in the list
    # that the top-level --help, a missing or an unknown command print.
    names = [argv[0]] if argv and argv[0] in COMMANDS else list(COMMANDS)
    for name in names:
        module, help_text = COMMANDS[name]
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = import_command(module)
            mod.add_arguments(p)
            if p.epilog:  # examples and exit-status tables: shown as written
                p.formatter_class = argparse.RawDescriptionHelpFormatter
            p.set_defaults(_run=mod.run, _parser=p)
    return parser


def parse(args_list: list[str], env: Environment) -> argparse.Namespace | int:
    """The command line's values (``_run`` the command), or the exit status when
    argparse said something instead: help, the version, a usage error."""
    parser = build_parser(args_list)
    # argparse writes help and usage errors to sys.stdout/stderr: send them to env's
    # (what contextlib.redirect_stdout does, without importing contextlib).
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = env.stdout, env.stderr
    try:
        args, unknown = parser.parse_known_args(args_list)
        if unknown:
            # argparse reports a subcommand's unknown option with the top-level
            # usage; the subcommand's own usage lists the options that exist.
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse exits on --help and --version
        if exc.code not in (0, None):
            return EX_USAGE
        env.document = None  # what was asked for is on stdout: no document after it
        return EX_OK
    except UsageError as exc:
        from smtpmail.cli import failed

        return failed(exc, env)
    finally:
        sys.stdout, sys.stderr = saved
    if getattr(args, "_run", None) is None:
        parser.print_help(env.stdout)
        return EX_USAGE
    return args
