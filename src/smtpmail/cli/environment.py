"""What the CLI reads and writes, in one object that tests replace (HTTPie's pattern)."""

from __future__ import annotations

import os
import sys

from smtpmail._record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from pathlib import Path
    from typing import IO, Any


def _xdg_folder(variable: str, *default: str) -> str:
    """``$variable/smtpmail``, else ``~/<default>/smtpmail`` (XDG base directories)."""
    base = os.environ.get(variable) or os.path.join(os.path.expanduser("~"), *default)
    return os.path.join(base, "smtpmail")


class _Folder:
    """A folder attribute: stored as given (a str for the defaults), read as a Path.

    pathlib loads urllib.parse and ipaddress, start-up time that a plain send,
    which only asks whether the config file exists, need not pay.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, env: Environment, owner: type | None = None) -> Path:
        value: str | Path = getattr(env, self.slot)
        if isinstance(value, str):
            from pathlib import Path

            value = Path(value)
            setattr(env, self.slot, value)
        return value

    def __set__(self, env: Environment, value: str | Path) -> None:
        setattr(env, self.slot, value)


class _ReaderMayLeave:
    """A standard stream whose reader may leave: ``smtpmail send --json | head``.

    Once a write or flush finds the pipe broken, later output is dropped and the
    descriptor is pointed at ``/dev/null`` (so the interpreter's last flush is
    quiet too). The command goes on and its exit status stays its own: a mail
    that was sent must not exit 75 ("try again") because nobody read the
    report, or a cron job sends it twice. Any other failure to write (a full
    disk: ``--json > file``) is met the same way, and said once on
    ``errors_to`` (standard error), since nobody chose it. Everything else is
    the stream's.
    """

    def __init__(self, stream: IO[str], errors_to: IO[str] | None = None) -> None:
        self.stream = stream
        self.errors_to = errors_to
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self.stream.write(text)
            except OSError as exc:
                self._left(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except OSError as exc:
                self._left(exc)

    def _left(self, exc: OSError) -> None:
        self.gone = True
        if self.errors_to is not None and not isinstance(exc, BrokenPipeError):
            try:
                why = exc.strerror or exc
                self.errors_to.write(
                    f"smtpmail: cannot write the output ({why}): the rest is dropped\n"
                )
                self.errors_to.flush()
            except OSError:
                pass
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError, AttributeError):  # not a file (a test's StringIO)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def reader_may_leave(stream: IO[str], errors_to: IO[str] | None = None) -> IO[str]:
    """``stream`` guarded against a reader that leaves, or a file that cannot take
    more (:class:`_ReaderMayLeave`); ``errors_to`` hears of the latter."""
    # Duck-typed: write and flush are guarded, every other attribute is the stream's.
    return _ReaderMayLeave(stream, errors_to)  # type: ignore[return-value]


def _standard(name: str, fd: int, mode: str) -> IO[str]:
    """The process's standard stream ``sys.<name>``, or /dev/null for one its caller closed.

    A daemon, or mailutils' mail(1), may run smtpmail-sendmail with a standard
    descriptor closed: Python's sys.stdout is then None. /dev/null takes the
    descriptor's place (and sys.<name>'s), as Postfix's and sendmail's programs
    do at start-up, so that what the command writes goes nowhere instead of
    failing a mail that was sent, and a socket opened later never becomes
    "standard output".
    """
    stream: IO[str] | None = getattr(sys, name)
    if stream is not None:
        return stream
    try:
        os.fstat(fd)
    except OSError:  # still closed: /dev/null becomes descriptor fd
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        stream = open(fd, mode, encoding="utf-8", closefd=False)  # noqa: SIM115 (the process's)
    else:  # the descriptor was closed at start-up, and is something else's now
        stream = open(os.devnull, mode, encoding="utf-8")  # noqa: SIM115 (the process's)
    setattr(sys, name, stream)
    return stream


class Environment(Record):
    """Standard streams, terminal facts, environment variables and folders.

    Each left out (None) is the process's own. The folders are kept as given
    (a str for the default ones) and become a :class:`~pathlib.Path` when
    read: pathlib loads urllib.parse and ipaddress, start-up time a plain
    send, which only asks whether the config file exists
    (:meth:`config_file`), need not pay.
    """

    _config_dir: str | Path  # what _Folder stores
    _data_dir: str | Path
    #: The folder of the configuration file (``$XDG_CONFIG_HOME/smtpmail``).
    config_dir = _Folder()
    #: The folder of the outbox (``$XDG_DATA_HOME/smtpmail``).
    data_dir = _Folder()

    def __init__(  # noqa: PLR0917 (positional: a value class, see smtpmail._record)
        self,
        argv: list[str] | None = None,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        environ: dict[str, str] | None = None,
        config_dir: Path | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.argv: list[str] = list(sys.argv) if argv is None else argv
        self.stdin: IO[str] = _standard("stdin", 0, "r") if stdin is None else stdin
        self.stdout: IO[str] = _standard("stdout", 1, "w") if stdout is None else stdout
        self.stderr: IO[str] = _standard("stderr", 2, "w") if stderr is None else stderr
        self.environ: dict[str, str] = dict(os.environ) if environ is None else environ
        self.config_dir = (
            _xdg_folder("XDG_CONFIG_HOME", ".config") if config_dir is None else config_dir
        )
        self.data_dir = (
            _xdg_folder("XDG_DATA_HOME", ".local", "share") if data_dir is None else data_dir
        )

    #: The ``--json`` document the command fills in (smtpmail.cli.jsondoc), or None.
    document: dict[str, Any] | None = None

    def config_file(self, name: str) -> str:
        """``config_dir / name`` as a str, without making a Path."""
        return os.path.join(self._config_dir, name)

    @property
    def stdin_bytes(self) -> IO[bytes]:
        """Standard input as bytes (a message is read byte for byte)."""
        buffer = getattr(self.stdin, "buffer", None)
        if buffer is not None:
            return buffer  # type: ignore[no-any-return]
        import io

        return io.BytesIO(self.stdin.read().encode("utf-8"))

    @property
    def stdin_isatty(self) -> bool:
        return bool(getattr(self.stdin, "isatty", lambda: False)())

    def ask_password(self, prompt: str) -> str:
        """Ask for a password on the controlling terminal, echo off (getpass)."""
        import getpass  # only when a password is typed

        return getpass.getpass(prompt)

    @property
    def stdout_isatty(self) -> bool:
        return bool(getattr(self.stdout, "isatty", lambda: False)())

    @property
    def stderr_isatty(self) -> bool:
        return bool(getattr(self.stderr, "isatty", lambda: False)())

    @property
    def color(self) -> bool:
        """Color the transcript: standard error is a terminal and NO_COLOR is unset."""
        return self.stderr_isatty and "NO_COLOR" not in self.environ
