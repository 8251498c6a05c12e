"""The shape DESIGN.md promises: layering, twin clients, the public names."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import smtpmail
from smtpmail import errors
from smtpmail.transport.aio import AsyncClient
from smtpmail.transport.sync import Client

SRC = Path(smtpmail.__file__).resolve().parent

# Layers from the bottom up; a module may import its own layer or those below.
LAYERS = ["errors", "protocol", "message", "transport", "delivery", "outbox", "api", "cli"]
# (_socket, _ssl: the C cores, which the streams import for start-up time)
PROTOCOL_FORBIDDEN = {
    "socket",
    "_socket",
    "ssl",
    "_ssl",
    "asyncio",
    "time",
    "os",
    "select",
    "selectors",
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "smtpmail" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module imported by ``path`` (absolute names), with the line."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(("smtpmail", *path.relative_to(SRC).with_suffix("").parts))
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    # Imports only for type checkers never run: they do not make a dependency.
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # "from smtpmail import x" may name a submodule
            found += [(f"{name}.{a.name}", node.lineno) for a in node.names]
    return found


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_protocol_imports_no_io() -> None:
    bad = []
    for path in (SRC / "protocol").rglob("*.py"):
        for name, line in _imports(path):
            if name.split(".")[0] in PROTOCOL_FORBIDDEN:
                bad.append(f"{path.relative_to(SRC)}:{line} imports {name}")
    assert bad == []


def test_only_transport_and_above_touch_sockets() -> None:
    io_modules = {"socket", "_socket", "ssl", "_ssl", "asyncio", "select", "selectors"}
    bad = []
    for path in _modules():
        layer = _layer(".".join(("smtpmail", *path.relative_to(SRC).parts)))
        if layer in ("errors", "protocol", "message"):
            for name, line in _imports(path):
                if name.split(".")[0] in io_modules:
                    bad.append(f"{path.relative_to(SRC)}:{line} imports {name}")
    assert bad == []


def test_imports_point_down_only() -> None:
    bad = []
    for path in _modules():
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("__init__.py", "__main__.py"):
            continue  # the package root re-exports the public names lazily
        own = _layer(".".join(("smtpmail", *rel.with_suffix("").parts)))
        if own is None:
            continue
        for name, line in _imports(path):
            target = _layer(name)
            if target is not None and LAYERS.index(target) > LAYERS.index(own):
                bad.append(f"{rel}:{line} ({own}) imports {name} ({target})")
    assert bad == []


def test_no_smtplib_in_the_library() -> None:
    for path in _modules():
        assert all(name.split(".")[0] != "smtplib" for name, _ in _imports(path)), path


def test_the_layering_check_can_fail() -> None:
    # Guard against a walker that finds nothing: transport does import protocol.
    names = {n for n, _ in _imports(SRC / "transport" / "sync.py")}
    assert "smtpmail.protocol.session" in names
    assert "_socket" in {n for n, _ in _imports(SRC / "transport" / "stream.py")}
    assert _opens_connections(SRC / "transport" / "stream.py")
    assert _opens_connections(SRC / "transport" / "aio_stream.py")


#: Calls that open a connection or a socket: only the streams may make them.
OPENERS = {
    "create_connection",
    "open_connection",
    "socket",
    "socketpair",
    "fromfd",
    "wrap_socket",
    "start_tls",
    "connect",
    "connect_ex",
    "HTTPConnection",
    "HTTPSConnection",
    "urlopen",
}
#: Calls that share a name with an opener but go through the seam (a client's
#: connect, a stream's start_tls) or open no network connection (sqlite).
NOT_OPENERS = {"client.connect", "sqlite3.connect", "stream.start_tls"}


def _opens_connections(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in OPENERS and ast.unparse(func) not in NOT_OPENERS:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} calls {ast.unparse(func)}")
        elif isinstance(node, ast.ClassDef):
            # An HTTP connection class is fine when its connect() uses the seam.
            bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if bases & {"HTTPConnection", "HTTPSConnection"} and "connect" not in methods:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} keeps connect()")
    return found


def test_only_the_streams_open_connections() -> None:
    """The network seam carries every connection the product makes to a mail
    or web server (DESIGN.md). Two other kinds of exchange are not such
    connections, and no proxy, caller's socket or TLS check applies to them:
    the PostgreSQL outbox store's (psycopg connects to the queue's database
    itself) and DNS (transport/dnswire.py asks the resolver for the one TLSA
    answer dnspython cannot parse, as dnspython does for every other lookup)."""
    streams = {SRC / "transport" / "stream.py", SRC / "transport" / "aio_stream.py"}
    dns = SRC / "transport" / "dnswire.py"
    database = SRC / "outbox" / "postgres"
    bad = [
        hit
        for path in _modules()
        if path not in streams and path != dns and database not in path.parents
        for hit in _opens_connections(path)
    ]
    assert bad == []


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    out = {}
    for name, value in inspect.getmembers(cls):
        if name.startswith("_") and name not in (
            "__enter__",
            "__exit__",
            "__aenter__",
            "__aexit__",
        ):
            continue
        if callable(value):
            out[name.replace("__a", "__")] = inspect.signature(value)
    return out


def test_client_and_async_client_expose_the_same_api() -> None:
    sync, aio = _public_methods(Client), _public_methods(AsyncClient)
    assert set(sync) == set(aio)
    for name in sync:
        assert list(sync[name].parameters) == list(aio[name].parameters), name
    props = {n for n, v in inspect.getmembers(Client) if isinstance(v, property)}
    aprops = {n for n, v in inspect.getmembers(AsyncClient) if isinstance(v, property)}
    assert props == aprops


def test_async_twins_are_coroutines_where_the_sync_ones_do_io() -> None:
    for name in ("connect", "send", "send_many", "noop", "rset", "vrfy", "quit"):
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        assert not inspect.iscoroutinefunction(getattr(Client, name)), name
    assert not inspect.iscoroutinefunction(AsyncClient.close)


def test_all_equals_the_public_names() -> None:
    exported = set(smtpmail.__all__)
    assert len(exported) == len(smtpmail.__all__), "duplicates in __all__"
    assert exported - {"__version__"} == set(smtpmail._PUBLIC)
    for name in smtpmail.__all__:
        assert getattr(smtpmail, name) is not None
    assert set(errors.__all__) <= exported  # every error can be caught as smtpmail.X
    assert sorted(dir(smtpmail)) == sorted(smtpmail.__all__)


def test_type_checkers_see_every_public_name() -> None:
    """The lazy map and the TYPE_CHECKING imports in smtpmail/__init__.py name
    the same things, so type checkers and the API reference (mkdocstrings)
    resolve ``smtpmail.X`` for every public X."""
    tree = ast.parse(Path(smtpmail.__file__).read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module != "typing":
                    assert stmt.module is not None
                    seen.update({alias.name: stmt.module for alias in stmt.names})
    assert seen == smtpmail._PUBLIC


def test_every_error_answers_transient_or_permanent() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SMTPError)
        assert isinstance(cls.is_transient, property)
        assert isinstance(cls.is_permanent, property)


#: What differs between the twin trampolines besides async/await (unasync's rules).
UNASYNC = {
    "AsyncConnector": "Connector",
    "open_tcp": "connect_tcp",
    "await as_async_stream": "as_stream",
    "``Client._drive``": "``AsyncClient._drive``",
    # The async one resumes the flow through its pump (transport/aio_pump.py),
    # which carries on in the event loop's callbacks while it can.
    "await pump(self, steps, value, error)": (
        "steps.send(value) if error is None else steps.throw(error)"
    ),
    "except Finished as stop": "except StopIteration as stop",
}


def test_the_trampolines_are_twins() -> None:
    """The drive loop exists once (transport/drive.py); the two clients only
    perform its steps, in code that is the same but for async and await."""
    text = inspect.getsource(AsyncClient._drive)
    for old, new in UNASYNC.items():
        text = text.replace(old, new)
    text = text.replace("async ", "").replace("await ", "")
    assert text == inspect.getsource(Client._drive)


# -- the tests' own shape --------------------------------------------------------

TESTS = Path(__file__).resolve().parent


def _test_module_imports(source: str) -> list[tuple[int, str]]:
    """Imports in ``source`` that name a test module or a conftest (with the line).

    Shared test code belongs in tests/support, which pytest does not collect:
    importing a test module runs its tests' set-up twice and ties files together.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.level or not node.module:  # "from . import test_x"
                names += [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "tests" or any(p == "conftest" or p.startswith("test_") for p in parts):
                found.append((node.lineno, name))
    return found


def _test_sources() -> list[Path]:
    """Every test module and conftest.py under tests/."""
    return [
        p
        for p in sorted(TESTS.rglob("*.py"))
        if "node_modules" not in p.parts and (p.name.startswith("test_") or p.name == "conftest.py")
    ]


def test_no_test_module_imports_another_test_module() -> None:
    found = [
        f"{path.relative_to(TESTS)}:{line}: {name}"
        for path in _test_sources()
        for line, name in _test_module_imports(path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "from test_session import ready",
        "import test_data",
        "from conftest import certs",
        "from tests.protocol.test_data import normalise",
        "from . import test_sink",
        "def f():\n    from test_cli_sendmail import sendmail_cmd",
    ],
)
def test_the_test_import_check_can_fail(source: str) -> None:
    assert len(_test_sources()) > 100  # the walker sees the suite
    assert _test_module_imports(source)
    assert not _test_module_imports("import pytest\nfrom support.harness import drive")
