"""The ``smtpmail`` command line: thin over the public API.

Each subcommand lives in its own module, imported only when it runs, so
``smtpmail --help`` and a one-message send start fast. A module provides
``add_arguments(parser)`` and ``run(args, env) -> int``; its one-line help is in
:data:`COMMANDS`, so the list of commands is built without importing any.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import sys
from collections.abc import Callable, Sequence

from smtpmail.cli.environment import Environment, reader_may_leave
from smtpmail.cli.exits import EX_OK, EX_USAGE, UsageError, exit_status

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import typing
    from types import ModuleType

__all__ = ["COMMANDS", "Environment", "main"]

#: subcommand -> (module, one-line help). Modules are imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("smtpmail.cli.demo", "send a message to an embedded local server and show it all"),
    "sink": ("smtpmail.cli.sink", "run a local capture server that shows what it receives"),
    "send": ("smtpmail.cli.send", "compose a message (or take one) and send it"),
    "sendmail": ("smtpmail.cli.sendmail", "a sendmail-compatible interface (for cron, git, mutt)"),
    "probe": (
        "smtpmail.cli.probe",
        "connect to a server and report what it offers and what is wrong",
    ),
    "config": ("smtpmail.cli.config", "show the configuration file's path and accounts"),
    "queue": ("smtpmail.cli.queue", "queue messages durably and deliver them with retries"),
    "merge": ("smtpmail.cli.merge", "mail merge: one message per CSV row, sent with progress"),
}


#: Commands that parse their own arguments (sendmail's flags do not fit argparse).
RAW_ARGV_COMMANDS = frozenset({"sendmail"})

#: Commands that send one message and end (a process per message: cron, git,
#: scripts, bench scenario 6). What they allocate (modules, classes, one
#: message) lives until the process ends, so a collection of reference cycles
#: finds nothing to free: see :func:`_one_shot`.
ONE_SHOT_COMMANDS = frozenset({"send", "sendmail"})


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
        argparse's exit, :func:`main`'s error path (a ``--json`` document too)."""
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise ReportedUsageError(f"{self.prog}: error: {message}")


class ReportedUsageError(UsageError):
    """A usage error argparse's way has already shown on stderr."""


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    from smtpmail import __version__

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
            mod = _import(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run, _parser=p)
    return parser


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run the CLI; returns the exit status (sysexits.h values, see ``exits``)."""
    env = env or Environment()
    # A reader that leaves early (`| head`) never changes the exit status.
    out, err = env.stdout, env.stderr
    env.stdout, env.stderr = reader_may_leave(out), reader_may_leave(err)
    try:
        return _run_main(argv, env)
    finally:
        env.stdout.flush()  # a pipe's buffer: its break is found here, not at exit
        env.stdout, env.stderr = out, err


def _run_main(argv: Sequence[str] | None, env: Environment) -> int:
    from smtpmail.cli import _warn

    _warn.install(env.stderr)
    args_list = list(env.argv[1:] if argv is None else argv)
    if args_list[:1] and args_list[0] in ONE_SHOT_COMMANDS and gc.isenabled():
        return _one_shot(args_list, env)
    return _with_document(args_list, env)


def _one_shot(args_list: list[str], env: Environment) -> int:
    """A one-message command, run without the cycle collector.

    Its work is start-up: importing the modules and building the classes it
    needs, objects that live to the end. The collector walks them again and
    again as they are made, and the interpreter's last collection at exit walks
    them all once more, only to free what exiting frees anyway: together a
    tenth of the instructions of a one-message send (callgrind, bench scenario
    6). Reference counting still frees everything else as it goes. The
    collector runs again once the command returns; at the interpreter's exit,
    gc.freeze (an atexit function) leaves what is alive then to the exit.
    """
    gc.disable()
    try:
        return _with_document(args_list, env)
    finally:
        gc.enable()
        # (registered once however often main() runs in one process: a test's)
        atexit.unregister(gc.freeze)
        atexit.register(gc.freeze)


def _with_document(args_list: list[str], env: Environment) -> int:
    if "--json" in args_list:
        # Started before parsing: a usage error is a JSON document too.
        from smtpmail.cli import jsondoc

        env.document = jsondoc.start(_command_name(args_list))
        status = _main(args_list, env)
        if env.document is not None:  # None: --help or --version printed instead
            jsondoc.finish(env, env.document, status)
        return status
    return _main(args_list, env)


#: ``queue``'s actions: a --json document names them (``queue run``).
QUEUE_ACTIONS = ("add", "list", "show", "run", "retry", "purge", "report")


def _command_name(args_list: list[str]) -> str:
    """``send``, ``queue run``...: a guess from the words, for a document whose
    command line does not parse; :func:`_main` says it exactly once it does."""
    words = [a for a in args_list if not a.startswith("-")]
    if words[:1] == ["queue"]:
        return " ".join(["queue", *[w for w in words if w in QUEUE_ACTIONS][:1]])
    return words[0] if words else ""


def _main(args_list: list[str], env: Environment) -> int:
    if args_list[:1] and args_list[0] in RAW_ARGV_COMMANDS:
        mod = _import(COMMANDS[args_list[0]][0])
        return _call(lambda: int(mod.run_argv(args_list[1:], env)), env)
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
        return _failed(exc, env)
    finally:
        sys.stdout, sys.stderr = saved
    if env.document is not None and args.command:
        action = getattr(args, "action", None)
        env.document["command"] = f"{args.command} {action}" if action else args.command
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(env.stdout)
        return EX_USAGE
    return _call(lambda: int(run(args, env)), env)


def _import(module: str) -> ModuleType:
    """importlib.import_module without importing importlib (start-up time)."""
    __import__(module)
    return sys.modules[module]


def _call(command: Callable[[], int], env: Environment) -> int:
    try:
        return command()
    except KeyboardInterrupt:
        env.stderr.write("interrupted\n")
        return 130
    except Exception as exc:  # one place maps errors to exit statuses
        return _failed(exc, env)


def _failed(exc: Exception, env: Environment) -> int:
    status, text = exit_status(exc)
    shown = isinstance(exc, ReportedUsageError)
    if not shown:
        env.stderr.write(f"smtpmail: {text}\n")
    if env.document is not None:
        from smtpmail.cli import jsondoc

        jsondoc.error(env.document, exc, text, kind="UsageError" if shown else None)
    return status
