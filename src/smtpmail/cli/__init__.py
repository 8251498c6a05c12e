"""The ``smtpmail`` command line: thin over the public API.

Each subcommand lives in its own module, imported only when it runs, so
``smtpmail --help`` and a one-message send start fast. A module provides
``add_arguments(parser)`` and ``run(args, env) -> int``; its one-line help is in
:data:`COMMANDS`, so the list of commands is built without importing any.
argparse (:mod:`smtpmail.cli.parser`) parses the command line, but for the
one-message commands, parsed by :mod:`smtpmail.cli.options` when that is
exact: argparse was 15% of their start-up.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from collections.abc import Callable, Sequence

from smtpmail.cli.environment import Environment, reader_may_leave
from smtpmail.cli.exits import ReportedUsageError, exit_status

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import typing
    from types import ModuleType
    from typing import NoReturn

__all__ = ["COMMANDS", "Environment", "console", "exit_process", "main"]

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


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """Run the CLI; returns the exit status (sysexits.h values, see ``exits``)."""
    env = env or Environment()
    # A reader that leaves early (`| head`), or a full disk, never changes the exit status.
    out, err = env.stdout, env.stderr
    env.stdout, env.stderr = reader_may_leave(out, errors_to=err), reader_may_leave(err)
    try:
        return _run_main(argv, env)
    finally:
        env.stdout.flush()  # a pipe's buffer: its break is found here, not at exit
        env.stdout, env.stderr = out, err


def console() -> NoReturn:
    """The ``smtpmail`` command (and ``python -m smtpmail``): :func:`main` on
    this process's arguments, then the process's exit (:func:`exit_process`)."""
    exit_process(main(), one_shot=sys.argv[1:2] != [] and sys.argv[1] in ONE_SHOT_COMMANDS)


def exit_process(status: int, *, one_shot: bool) -> NoReturn:
    """End the process with ``status``; after a one-message command, without
    the interpreter's teardown.

    The teardown empties every module and frees every object one by one:
    memory the exit hands back whole, a twentieth of the instructions of a
    one-message send (callgrind, bench scenario 6), as a C program's exit
    skips it. What the teardown would do that anyone could see is done first:
    the atexit functions run (logging's shutdown flushes and closes its
    handlers) and the standard streams are flushed; the command's own files
    and connections are closed by then. With another thread alive (which the
    interpreter would wait for), or a stream that cannot be flushed (whose
    error the interpreter reports), the exit is the interpreter's.
    """
    threading = sys.modules.get("threading")
    if one_shot and (threading is None or threading.active_count() == 1):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            atexit._run_exitfuncs()  # (what the interpreter's exit runs first)
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        else:
            os._exit(status)
    sys.exit(status)


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
        mod = import_command(COMMANDS[args_list[0]][0])
        return _call(lambda: int(mod.run_argv(args_list[1:], env)), env)
    args = _parse_one_shot(args_list)
    if args is None:
        from smtpmail.cli.parser import parse

        parsed = parse(args_list, env)
        if isinstance(parsed, int):
            return parsed
        args = parsed
    if env.document is not None and args.command:
        action = getattr(args, "action", None)
        env.document["command"] = f"{args.command} {action}" if action else args.command
    run = args._run
    return _call(lambda: int(run(args, env)), env)


def _parse_one_shot(args_list: list[str]) -> typing.Any:
    """A one-message command's values, parsed by :mod:`smtpmail.cli.options`
    without argparse; None when argparse must decide (help, an error...)."""
    if not args_list or args_list[0] not in ONE_SHOT_COMMANDS:
        return None
    from types import SimpleNamespace

    from smtpmail.cli.options import Options

    mod = import_command(COMMANDS[args_list[0]][0])
    options = Options()
    mod.add_arguments(options)
    values = options.parse(args_list[1:])
    if values is None:
        return None
    return SimpleNamespace(command=args_list[0], _run=mod.run, **values)


def import_command(module: str) -> ModuleType:
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
        return failed(exc, env)


def failed(exc: Exception, env: Environment) -> int:
    """Say why the command failed (on stderr, and in a ``--json`` document), and
    return its exit status."""
    status, text = exit_status(exc)
    shown = isinstance(exc, ReportedUsageError)
    if not shown:
        env.stderr.write(f"smtpmail: {text}\n")
    if env.document is not None:
        from smtpmail.cli import jsondoc

        jsondoc.error(env.document, exc, text, kind="UsageError" if shown else None)
    return status
