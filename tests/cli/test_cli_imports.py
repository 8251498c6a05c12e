"""Start-up stays light: which modules ``--help`` and a one-message send import.

Not a timing test (speed is measured in bench/): it fails when a heavy module
that the command does not use gets imported. Start-up is what bench scenario 6
(``smtpmail send --message FILE``, one process per message, against swaks)
measures: every module here that a plain send loaded cost it CPU time.

What stays out of a clear-text, unauthenticated send, and where it is loaded:
ssl/hashlib/hmac when TLS starts (transport.tls, transport.sync); sasl and its
hashes when a client authenticates; email.* when a Message is composed or
the envelope is read from the headers (message.raw, message.content); json
for --json; subprocess for --password-command; typing never at run time
(TYPE_CHECKING); the idna codec never for ASCII host names (bytes to
getaddrinfo/gethostbyaddr); shutil never (cli.Parser gives argparse the width);
dataclasses never, and with it inspect (ast, dis, tokenize: a sixth of the
start-up): the classes on this path derive from smtpmail._record instead;
base64 only when a client authenticates (session's AUTH); logging only when a
record could go somewhere (smtpmail._log); socket.py (its enums, selectors,
select, math, array), weakref.py and struct never: the transport and the
session's guard use their C cores, _socket and _weakref; argparse (gettext,
locale) never when the options parse without it (smtpmail.cli.options).
Dropping dataclasses took bench scenario 6 from 76 to 67 ms of CPU per send.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from smtpmail.cli import COMMANDS, Environment
from smtpmail.cli.parser import build_parser
from support.clirun import run_cli
from support.servers import RecordingServer

PROBE = """
import sys
from smtpmail.cli import main
status = main(sys.argv[1:])
watched = ("asyncio", "ssl", "_ssl", "email", "smtpmail.protocol", "smtpmail.transport.aio",
           "tomllib", "mimetypes", "aiosmtpd", "dns", "hashlib", "hmac", "secrets",
           "stringprep", "subprocess", "json", "smtpmail.message.compose",
           "smtpmail.protocol.sasl", "typing", "encodings.idna", "shutil",
           "dataclasses", "inspect", "ast", "dis", "base64", "logging", "tokenize",
           "pathlib", "urllib", "ipaddress", "fnmatch", "contextlib", "importlib", "aiohttp",
           "socket", "selectors", "select", "math", "array", "weakref", "struct", "_struct",
           "argparse", "gettext", "locale")
print("imported: " + " ".join(sorted(m for m in sys.modules if m.split(".")[0] in watched
                      or m in watched)), file=sys.stderr)
sys.exit(status)
"""


#: What a clear-text, unauthenticated send of an existing message never needs:
#: TLS (ssl, hashes), SASL's helpers, the email package (the envelope is given),
#: JSON output, the password command's subprocess, asyncio.
NOT_FOR_A_PLAIN_SEND = {
    "asyncio",
    "smtpmail.transport.aio",
    "ssl",
    "_ssl",
    "hashlib",
    "hmac",
    "secrets",
    "email",
    "email.message",
    "email.parser",
    "subprocess",
    "json",
    "mimetypes",
    "tomllib",
    "aiosmtpd",
    "aiohttp",
    "dns",
    "smtpmail.message.compose",
    "smtpmail.protocol.sasl",
    # dataclasses imports inspect, which imports ast, dis and tokenize.
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "base64",
    # logging (with traceback, tokenize...) only once a record could go somewhere.
    "logging",
    "tokenize",
    # socket.py (four enums of every constant, selectors, select, math, array):
    # the transport connects with its C core, _socket; ssl and asyncio load it.
    "socket",
    "selectors",
    "select",
    "math",
    "array",
    # weakref.py: the session's guard takes ref from its C core, _weakref.
    "weakref",
    # struct (a shared library): the stream packs its struct timeval with int.to_bytes.
    "struct",
    "_struct",
    # argparse (with gettext and locale): a one-message command's options are
    # parsed by smtpmail.cli.options; argparse only for help and errors.
    "argparse",
    "gettext",
    "locale",
}


def imported(*argv: str, flags: tuple[str, ...] = (), stdin: str = "") -> set[str]:
    done = subprocess.run(
        [sys.executable, *flags, "-c", PROBE, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("imported:")]
    return set(line.split()[1:])


def test_help_imports_no_protocol_email_or_io() -> None:
    mods = imported("--help")
    assert not mods & {"asyncio", "ssl", "email", "smtpmail.protocol", "tomllib", "mimetypes"}


def test_sink_help_imports_no_web_stack() -> None:
    """The web inbox (aiohttp) is imported by ``sink --web`` only."""
    mods = imported("sink", "--help")
    assert not mods & {"aiohttp", "aiosmtpd"}, sorted(mods & {"aiohttp", "aiosmtpd"})


def test_one_message_send_imports_no_asyncio(smtpd: RecordingServer) -> None:
    mods = imported(
        "send",
        "--port",
        str(smtpd.port),
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--body",
        "x",
    )
    assert len(smtpd.messages) == 1
    assert "smtpmail.protocol" in mods  # the probe sees what was used
    assert not mods & {"asyncio", "smtpmail.transport.aio", "mimetypes", "aiosmtpd", "dns"}


def send_a_file(
    smtpd: RecordingServer, tmp_path: Path, *host: str, flags: tuple[str, ...] = ()
) -> set[str]:
    """The modules one ``send --message FILE`` loads, envelope on the command line."""
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\n\r\nbody\r\n")
    mods = imported(
        "send",
        *host,
        "--port",
        str(smtpd.port),
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--message",
        str(message),
        flags=flags,
    )
    assert len(smtpd.messages) == 1
    assert smtpd.messages[0].rcpt_tos == ["b@example.org"]
    return mods


def test_sending_a_message_file_imports_no_tls_sasl_or_email(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    """The benchmark's one-message send (bench scenario 6): envelope on the command line."""
    mods = send_a_file(smtpd, tmp_path, "--host", "127.0.0.1")
    assert "smtpmail.protocol" in mods  # the probe sees what was used
    assert not mods & NOT_FOR_A_PLAIN_SEND, sorted(mods & NOT_FOR_A_PLAIN_SEND)


def test_a_message_file_without_envelope_still_reads_its_headers(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    """The lazy path must not skip the headers when they are the envelope; they
    are read without the email package (plain addresses, and one beside a plain
    display name or comment, need no parsing), and a quoted string loads only
    email.utils, never its parser."""
    message = tmp_path / "m.eml"
    message.write_bytes(
        b"From: a@example.org\r\nTo: b@example.org\r\nBcc: c@example.org\r\n\r\nbody\r\n"
    )
    mods = imported("send", "--port", str(smtpd.port), "--message", str(message))
    assert len(smtpd.messages) == 1
    assert smtpd.messages[0].mail_from == "a@example.org"
    assert sorted(smtpd.messages[0].rcpt_tos) == ["b@example.org", "c@example.org"]
    assert b"Bcc" not in smtpd.messages[0].content
    assert "email" not in mods, sorted(mods)
    message.write_bytes(b"From: Ann <a@example.org>\r\nTo: b@example.org (Bob)\r\n\r\nbody\r\n")
    mods = imported("send", "--port", str(smtpd.port), "--message", str(message))
    assert smtpd.messages[1].mail_from == "a@example.org"
    assert smtpd.messages[1].rcpt_tos == ["b@example.org"]
    assert "email" not in mods, sorted(mods)
    message.write_bytes(b'From: "Doe, Ann" <a@example.org>\r\nTo: b@example.org\r\n\r\nbody\r\n')
    mods = imported("send", "--port", str(smtpd.port), "--message", str(message))
    assert smtpd.messages[2].mail_from == "a@example.org"
    assert "email.utils" in mods
    assert "email.parser" not in mods


def test_a_plain_send_imports_no_typing_or_idna(smtpd: RecordingServer, tmp_path: Path) -> None:
    """Without site (whose .pth files may load typing themselves), a plain send
    loads neither typing (annotations only, TYPE_CHECKING), nor the idna codec
    (host names go to getaddrinfo/gethostbyaddr as ASCII bytes), nor shutil
    (argparse's help formatter is given the terminal width)."""
    # The default host, localhost: a host name, not an address literal.
    mods = send_a_file(smtpd, tmp_path, flags=("-S",))
    assert not mods & {"typing", "encodings.idna", "shutil"}, sorted(mods)


#: What a plain send does not load either, seen without site (whose .pth files
#: import some of these themselves): pathlib (with urllib.parse, ipaddress and
#: fnmatch) while the folders stay strings and no config file exists, ipaddress
#: for an ASCII --host, contextlib (main swaps the streams itself), importlib
#: (commands are imported with __import__).
NOT_AT_START_UP = {
    "pathlib",
    "urllib",
    "urllib.parse",
    "ipaddress",
    "fnmatch",
    "contextlib",
    "importlib",
}


def test_a_plain_send_imports_no_pathlib_ipaddress_contextlib_or_importlib(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    mods = send_a_file(smtpd, tmp_path, "--host", "127.0.0.1", flags=("-S",))
    assert not mods & NOT_AT_START_UP, sorted(mods & NOT_AT_START_UP)


def test_a_send_to_host_colon_port_imports_no_url_parser(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    """``--server HOST:PORT``, the usual form, is read without urllib.parse
    (which imports ipaddress): a URL with a scheme still gets it."""
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\n\r\nbody\r\n")
    envelope = ("--from", "a@example.org", "--to", "b@example.org", "--message", str(message))
    plain = imported("send", "--server", f"127.0.0.1:{smtpd.port}", *envelope, flags=("-S",))
    assert not plain & NOT_AT_START_UP, sorted(plain & NOT_AT_START_UP)
    url = imported("send", "--server", f"smtp://127.0.0.1:{smtpd.port}", *envelope, flags=("-S",))
    assert "urllib.parse" in url
    assert len(smtpd.messages) == 2


def _commands_built(parser: argparse.ArgumentParser) -> list[str]:
    # argparse keeps the subcommands in the action add_subparsers() returned.
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_a_command_given_first_gets_only_its_own_parser() -> None:
    assert _commands_built(build_parser(["send", "--to", "x@example.org"])) == ["send"]
    # No command, an unknown one, or an option first: all of them, for the list.
    for argv in ([], ["--help"], ["bogus"], ["-h", "send"]):
        assert _commands_built(build_parser(argv)) == list(COMMANDS), argv


def test_help_and_usage_errors_still_name_every_command() -> None:
    for argv in (("--help",), ("-h", "send")):
        r = run_cli(*argv)
        assert r.status == 0
        assert r.stdout.startswith("usage: smtpmail [-h] [--version] COMMAND ...")
        words = " ".join(r.stdout.split())  # whatever the width it was wrapped to
        for name, (_module, help_text) in COMMANDS.items():
            assert f" {name} {help_text}" in words, name
    r = run_cli("bogus")
    assert r.status == 64
    assert "invalid choice: 'bogus'" in r.stderr
    assert all(repr(name) in r.stderr for name in COMMANDS)
    r = run_cli("send", "--port", "x")
    assert r.status == 64
    assert r.stderr.startswith("usage: smtpmail send ")
    assert "smtpmail send: error: argument --port/-p: invalid int value: 'x'" in r.stderr


def test_the_default_folders_are_still_paths_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/x/conf")
    monkeypatch.setenv("XDG_DATA_HOME", "/x/data")
    env = Environment()
    assert env.config_file("config.toml") == "/x/conf/smtpmail/config.toml"
    assert env.config_dir == Path("/x/conf/smtpmail")
    assert env.data_dir == Path("/x/data/smtpmail")
    assert env.config_file("config.toml") == str(env.config_dir / "config.toml")
    assert "config_dir=PosixPath('/x/conf/smtpmail')" in repr(env)


#: A composed send needs the email package (and with it urllib.parse, ipaddress,
#: base64), but not dataclasses (inspect, ast, dis, tokenize: compose's classes
#: derive from smtpmail._record), nor the idna codec for an ASCII From domain
#: (its Message-ID domain), nor typing, contextlib, importlib or pathlib.
NOT_FOR_A_COMPOSED_SEND = {
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "tokenize",
    "encodings.idna",
    "stringprep",
    "typing",
    "contextlib",
    "importlib",
    "pathlib",
    "asyncio",
    "ssl",
}


def test_a_composed_send_imports_no_dataclasses_or_idna(smtpd: RecordingServer) -> None:
    mods = imported(
        "send",
        "--port",
        str(smtpd.port),
        "--from",
        "A <a@example.org>",
        "--to",
        "b@example.org",
        "--subject",
        "s",
        "--body",
        "x",
        flags=("-S",),
    )
    assert len(smtpd.messages) == 1
    assert b"Message-ID: <" in smtpd.messages[0].content
    assert b"@example.org>" in smtpd.messages[0].content
    assert "smtpmail.message.compose" in mods  # the probe sees what was used
    assert not mods & NOT_FOR_A_COMPOSED_SEND, sorted(mods & NOT_FOR_A_COMPOSED_SEND)


@pytest.mark.parametrize(
    "domain",
    ["example.org", "a.", "a..b", "x" * 63 + ".org", "x" * 64 + ".org", "org." + "x" * 64,
     "bücher.example", "[1.2.3.4]", ""],
)  # fmt: skip
def test_the_message_id_domain_is_what_the_idna_codec_gives(domain: str) -> None:
    """The ASCII shortcut agrees with the codec; what the codec would write
    that is not LDH labels (or an address literal) is refused."""
    import re

    from smtpmail.errors import InvalidAddress
    from smtpmail.message.compose import _idna

    ldh = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
    try:
        expected: str | None = domain.encode("idna").decode("ascii")
    except UnicodeError:
        expected = None
    literal = domain.startswith("[")
    if expected is None or not (literal or all(map(ldh.match, expected.split(".")))):
        with pytest.raises(InvalidAddress):
            _idna(domain)
    else:
        assert _idna(domain) == expected


def test_sendmail_and_a_verbose_send_import_no_typing(smtpd: RecordingServer) -> None:
    """sendmail runs once per message too (cron, git send-email); -v adds the
    transcript printer. Neither imports typing (TYPE_CHECKING = False idiom),
    nor argparse (their options parse without it)."""
    mods = imported(
        "sendmail",
        "--host",
        "127.0.0.1",
        "--port",
        str(smtpd.port),
        "-f",
        "a@example.org",
        "b@example.org",
        flags=("-S",),
        stdin="Subject: s\n\nbody\n",
    )
    assert len(smtpd.messages) == 1
    assert not mods & {"typing", "contextlib", "dataclasses", "pathlib", "argparse"}, sorted(mods)
    mods = imported(
        "send",
        "-v",
        "--port",
        str(smtpd.port),
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--message",
        "-",
        flags=("-S",),
        stdin="Subject: s\n\nbody\n",
    )
    assert len(smtpd.messages) == 2
    assert not mods & {"typing", "contextlib", "dataclasses", "pathlib", "argparse"}, sorted(mods)


def test_import_smtpmail_loads_nothing_else() -> None:
    """``import smtpmail`` stays lazy: the public names load on first use
    (its __getattr__), importlib included."""
    code = (
        "import sys; before = set(sys.modules); import smtpmail; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) <= {"smtpmail", "__future__"}, done.stdout


def _collecting_while_it_runs(
    monkeypatch: pytest.MonkeyPatch, module: str, *argv: str
) -> tuple[bool, int]:
    """Whether the cycle collector ran while ``module``'s command ran, and its status."""
    import gc
    import importlib

    mod = importlib.import_module(module)
    seen: list[bool] = []
    command = mod.run

    def run(args: argparse.Namespace, env: Environment) -> int:
        seen.append(gc.isenabled())
        return int(command(args, env))

    monkeypatch.setattr(mod, "run", run)
    status = run_cli(*argv).status
    (collecting,) = seen
    assert gc.isenabled()  # as it was before main()
    return collecting, status


def test_a_one_message_send_runs_without_the_cycle_collector(
    monkeypatch: pytest.MonkeyPatch, smtpd: RecordingServer
) -> None:
    """A send's process keeps what it allocates to the end: collecting cycles
    (during start-up and once more at exit) only costs it time. Other commands
    (the capture server, the queue's worker) run long: they keep the collector."""
    send = ("send", "--port", str(smtpd.port), "--from", "a@example.org", "--to", "b@example.org")
    assert _collecting_while_it_runs(monkeypatch, "smtpmail.cli.send", *send, "--body", "x") == (
        False,
        0,
    )
    assert len(smtpd.messages) == 1
    assert _collecting_while_it_runs(monkeypatch, "smtpmail.cli.config", "config") == (True, 0)


def test_the_exit_of_a_send_leaves_its_objects_to_the_exit(
    smtpd: RecordingServer, tmp_path: Path
) -> None:
    """At exit, gc.freeze runs first: the interpreter's last collection does
    not walk the modules and classes of a process that is ending."""
    code = (
        "import atexit, gc, sys\n"
        "from smtpmail.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "atexit._run_exitfuncs()\n"
        "print('frozen' if gc.get_freeze_count() else 'not frozen')\n"
        "sys.exit(status)\n"
    )
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n")
    argv = ["--port", str(smtpd.port), "--from", "a@example.org", "--to", "b@example.org"]
    done = subprocess.run(
        [sys.executable, "-c", code, "send", *argv, "--message", str(message)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "frozen\n"), done.stderr
    assert len(smtpd.messages) == 1


# A process's last words: an atexit function, a thread that ends after the
# command, and an object that only the interpreter's teardown frees.
LAST_WORDS = """
import atexit, os, sys, threading, types
from smtpmail.cli import console

class Teardown:
    def __del__(self):
        os.write(1, b"teardown ran\\n")

# Held by a module of its own (no cycle): freed when the teardown empties sys.modules.
canary = types.ModuleType("canary")
canary.keep = Teardown()
sys.modules["canary"] = canary
del canary
atexit.register(print, "atexit ran", flush=True)
if "--thread" in sys.argv:
    sys.argv.remove("--thread")
    # (it ends once the main thread has: after the command, whatever its speed)
    main = threading.main_thread()
    threading.Thread(target=lambda: (main.join(), print("thread ended", flush=True))).start()
print("x" * 200_000)  # more than a pipe holds: still in the buffer when the command ends
sys.argv[0] = "smtpmail"
console()
"""


def _last_words(*argv: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", LAST_WORDS, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.startswith("x" * 200_000 + "\n"), done.stderr
    return done.returncode, done.stdout[200_001:]


def test_a_send_exits_without_the_teardown_and_keeps_what_an_exit_shows(
    smtpd: RecordingServer,
) -> None:
    """A one-message command's exit skips the interpreter's teardown (a
    twentieth of its instructions): the output is all there, the atexit
    functions run, the exit status is the command's; only the teardown's
    finalizers do not run."""
    send = ["send", "--port", str(smtpd.port), "--from", "a@example.org", "--to", "b@example.org"]
    assert _last_words(*send, "--body", "x") == (0, "atexit ran\n")
    assert len(smtpd.messages) == 1
    refused = ["send", "--port", "1", "--from", "a@example.org", "--to", "b@example.org"]
    assert _last_words(*refused, "--body", "x") == (75, "atexit ran\n")  # EX_TEMPFAIL


def test_a_thread_still_running_gets_the_interpreters_exit(smtpd: RecordingServer) -> None:
    send = ["send", "--port", str(smtpd.port), "--from", "a@example.org", "--to", "b@example.org"]
    status, said = _last_words("--thread", *send, "--body", "x")
    assert (status, said[:24]) == (0, "thread ended\natexit ran\n"), said


def test_other_commands_keep_the_interpreters_exit() -> None:
    status, said = _last_words("config")
    assert (status, said.endswith("config.toml (does not exist)\natexit ran\nteardown ran\n")) == (
        0,
        True,
    ), said
