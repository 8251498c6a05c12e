"""``--json`` is a contract: every command that sends or reports prints one
document valid against the shipped schema (smtpmail/v1), errors included.

Table-driven, through the installed console scripts (``smtpmail``,
``smtpmail-sendmail``) against aiosmtpd (and Postfix's smtp-sink); each row
checks the schema and then what the row is about. ``--direct`` is checked in
tests/delivery/test_cli_json_direct.py, on the loopback Internet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.clirun import CLIResult, run_script
from support.jsoncontract import check
from support.postfix import SmtpSink
from support.servers import RecordingServer, free_port

LETTER = b"From: a@example.org\nTo: b@example.net, c@example.net\nSubject: queued\n\nhello\n"
TEMPLATE = b"From: a@example.org\nTo: {{email}}\nSubject: hi {{name}}\n\nDear {{name}}\n"
MSG = ("--from", "a@example.org", "--subject", "s", "--body", "hello")


@dataclass
class Case:
    """One command line: what it runs, what it exits with, what its document says."""

    script: str
    argv: tuple[str, ...]  # {port}, {q} (the outbox), {tmp} are filled in
    status: int
    expect: Callable[[dict[str, Any]], None] = lambda doc: None
    stdin: bytes = b""
    refuse: dict[str, str] = field(default_factory=dict)  # the server's RCPT refusals
    data_reply: str | None = None  # the server's reply to the end of the data
    before: tuple[tuple[str, ...], ...] = ()  # smtpmail command lines run first


def rcpt(doc: dict[str, Any], address: str) -> dict[str, Any]:
    (found,) = [r for r in doc["recipients"] if r["address"] == address]
    return found


def _relay_ok(doc: dict[str, Any]) -> None:
    assert doc["mode"] == "relay" and doc["error"] is None
    assert doc["envelope"] == {"sender": "a@example.org", "recipients": ["b@example.net"]}
    assert doc["message_id"].startswith("<") and doc["message_id"].endswith(">")
    r = rcpt(doc, "b@example.net")
    assert r["status"] == "delivered"
    # The RCPT reply, and the end-of-data reply apart (before: the data's in both places).
    assert r["rcpt_reply"]["code"] == 250 and r["rcpt_reply"]["text"] == "OK"
    assert r["data_reply"]["text"] == "OK: queued" and doc["data_reply"]["code"] == 250
    assert doc["server"]["greeting"].startswith("220")


def _partial(doc: dict[str, Any]) -> None:
    good, bad = rcpt(doc, "b@example.net"), rcpt(doc, "c@example.net")
    assert good["status"] == "delivered" and good["rcpt_reply"]["text"] == "OK"
    assert bad["status"] == "failed" and bad["rcpt_reply"]["code"] == 550
    assert bad["enhanced"] == "5.1.1" and bad["data_reply"] is None


def _all_refused(doc: dict[str, Any]) -> None:
    assert doc["error"]["type"] == "RecipientsRefused"
    assert doc["envelope"]["recipients"] == ["b@example.net", "c@example.net"]
    assert rcpt(doc, "b@example.net")["status"] == "deferred"
    assert rcpt(doc, "c@example.net")["status"] == "failed"


def _data_refused(doc: dict[str, Any]) -> None:
    assert doc["error"]["type"] == "DataRefused" and doc["error"]["reply"]["code"] == 554
    r = rcpt(doc, "b@example.net")
    assert r["rcpt_reply"]["code"] == 250 and r["data_reply"]["code"] == 554
    assert r["status"] == "failed"


def _error(kind: str, *words: str) -> Callable[[dict[str, Any]], None]:
    def expect(doc: dict[str, Any]) -> None:
        assert doc["error"]["type"] == kind, doc["error"]
        for word in words:
            assert word in doc["error"]["message"], doc["error"]["message"]

    return expect


def _dry_run(doc: dict[str, Any]) -> None:
    assert doc["mode"] == "dry-run" and "Subject: s" in doc["message"]
    assert rcpt(doc, "b@example.net")["status"] == "unsent"


def _queued(status: str) -> Callable[[dict[str, Any]], None]:
    def expect(doc: dict[str, Any]) -> None:
        assert doc["mode"] == "queue"
        (message,) = doc["messages"]
        assert message["status"] == status and rcpt(doc, "b@example.net")["status"] == status
        assert message["message_id"] == doc["message_id"]

    return expect


def _sendmail(doc: dict[str, Any]) -> None:
    assert doc["command"] == "sendmail" and doc["mode"] == "relay"
    assert doc["envelope"]["recipients"] == ["b@example.net", "c@example.net"]
    assert doc["message_id"]  # added by sendmail mode, and said
    assert rcpt(doc, "c@example.net")["rcpt_reply"]["code"] == 250


def _probe(doc: dict[str, Any]) -> None:
    assert doc["greeting"].startswith("220") and "plain" in doc
    assert doc["server"]["host"] == "127.0.0.1"


def _queue_listed(doc: dict[str, Any]) -> None:
    (message,) = doc["messages"]
    assert message["subject"] == "queued" and message["status"] == "queued"
    assert message["envelope"]["recipients"] == ["b@example.net", "c@example.net"]
    # Each recipient's own next attempt (the message's is the earliest of them).
    times = [r["next_attempt"] for r in message["recipients"]]
    assert times == [message["next_attempt"]] * 2 and times[0] is not None


def _queue_run(doc: dict[str, Any]) -> None:
    assert doc["summary"] == {
        "attempted": 1, "delivered": 1, "deferred": 0, "failed": 1, "possibly_delivered": 0,
    }  # fmt: skip
    (message,) = doc["messages"]
    states = {r["address"]: r["status"] for r in message["recipients"]}
    assert states == {"b@example.net": "delivered", "c@example.net": "failed"}
    assert [r["next_attempt"] for r in message["recipients"]] == [None, None]  # done


def _queue_report(doc: dict[str, Any]) -> None:
    (failure,) = doc["failures"]
    assert failure["recipient"] == "c@example.net" and failure["code"] == 550


def _merge(doc: dict[str, Any]) -> None:
    assert doc["summary"]["messages"] == 2 and doc["failures"] == []
    assert doc["summary"]["states"]["delivered"] == {"messages": 2, "recipients": 2}


SERVER = ("--server", "smtp://127.0.0.1:{port}")
QUEUE = ("queue", "--queue-dir", "{q}")
ADD = (*QUEUE, "add", "-i", "{tmp}/letter.eml")
MERGE = ("merge", "--template", "{tmp}/t.eml", "--data", "{tmp}/d.csv", "--queue-dir", "{q}")

CASES = {
    "send": Case("smtpmail", ("send", *SERVER, *MSG, "--to", "b@example.net"), 0, _relay_ok),
    "send partial": Case(
        "smtpmail",
        ("send", *SERVER, *MSG, "--to", "b@example.net", "--to", "c@example.net"),
        79,
        _partial,
        refuse={"c@example.net": "550 5.1.1 no such user"},
    ),
    "send all refused": Case(
        "smtpmail",
        ("send", *SERVER, *MSG, "--to", "b@example.net", "--to", "c@example.net"),
        75,
        _all_refused,
        refuse={"b@example.net": "450 4.2.1 busy", "c@example.net": "550 5.1.1 no such user"},
    ),
    "send data refused": Case(
        "smtpmail",
        ("send", *SERVER, *MSG, "--to", "b@example.net"),
        69,
        _data_refused,
        data_reply="554 5.6.0 content refused",
    ),
    "send dry-run": Case(
        "smtpmail", ("send", *SERVER, *MSG, "--to", "b@example.net", "--dry-run"), 0, _dry_run
    ),
    "send usage error": Case(
        "smtpmail", ("send", *MSG, "--bogus"), 64, _error("UsageError", "--bogus")
    ),
    "send bad address": Case(
        "smtpmail",
        ("send", *SERVER, "--from", "not an address", "--to", "b@example.net", "--body", "x"),
        65,
        _error("InvalidAddress", "'not an address'"),
    ),
    "send missing file": Case(
        "smtpmail",
        ("send", *SERVER, "--message", "{tmp}/nonexistent.eml"),
        66,
        _error("FileNotFoundError", "nonexistent.eml"),
    ),
    "send nothing listening": Case(
        "smtpmail",
        ("send", "--server", "smtp://127.0.0.1:{closed}", *MSG, "--to", "b@example.net"),
        75,
        lambda doc: doc["error"]["type"] == "ConnectError" and doc["envelope"] and None,
    ),
    "send --queue": Case(
        "smtpmail",
        ("send", *SERVER, *MSG, "--to", "b@example.net", "--queue", "--queue-dir", "{q}"),
        0,
        _queued("delivered"),
    ),
    "send --queue-only": Case(
        "smtpmail",
        ("send", *SERVER, *MSG, "--to", "b@example.net", "--queue-only", "--queue-dir", "{q}"),
        0,
        _queued("queued"),
    ),
    "sendmail": Case("smtpmail-sendmail", ("-t", "--json", *SERVER), 0, _sendmail, stdin=LETTER),
    "sendmail bad option": Case(
        "smtpmail-sendmail", ("-t", "--json", "--bogus", "x"), 64, _error("UsageError")
    ),
    "probe": Case("smtpmail", ("probe", "127.0.0.1:{port}"), 0, _probe),
    "probe nothing listening": Case(
        "smtpmail",
        ("probe", "127.0.0.1:{closed}"),
        75,
        lambda doc: doc["error"]["type"] == "ConnectError" and doc["diagnoses"] and None,
    ),
    "queue add": Case("smtpmail", ADD, 0, _queue_listed),
    "queue list": Case("smtpmail", (*QUEUE, "list"), 0, _queue_listed, before=(ADD,)),
    "queue show": Case("smtpmail", (*QUEUE, "show", "{id}"), 0, _queue_listed, before=(ADD,)),
    "queue show unknown": Case(
        "smtpmail",
        (*QUEUE, "show", "nosuchid"),
        65,
        _error("InvalidArgument", "nosuchid"),
        before=(ADD,),
    ),
    "queue run": Case(
        "smtpmail",
        (*QUEUE, "run", "--port", "{port}"),
        69,
        _queue_run,
        refuse={"c@example.net": "550 5.1.1 no such user"},
        before=(ADD,),
    ),
    "queue report": Case(
        "smtpmail",
        (*QUEUE, "report"),
        0,
        _queue_report,
        refuse={"c@example.net": "550 5.1.1 no such user"},
        before=(ADD, (*QUEUE, "run", "--port", "{port}")),
    ),
    "merge": Case("smtpmail", (*MERGE, "--port", "{port}"), 0, _merge),
    "merge dry-run": Case(
        "smtpmail", (*MERGE, "--dry-run"), 0, lambda doc: doc["rows"] == 2 and None
    ),
    "merge queue-only": Case(
        "smtpmail", (*MERGE, "--queue-only"), 0, lambda doc: len(doc["messages"]) == 2 and None
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_json_document(name: str, smtpd: RecordingServer, tmp_path: Path) -> None:
    case = CASES[name]
    smtpd.handler.refuse = dict(case.refuse)
    if case.data_reply:
        smtpd.handler.data_reply = case.data_reply
    (tmp_path / "letter.eml").write_bytes(LETTER)
    (tmp_path / "t.eml").write_bytes(TEMPLATE)
    (tmp_path / "d.csv").write_text("name,email\nAda,ada@example.net\nBob,bob@example.net\n")
    fill = {"port": smtpd.port, "q": tmp_path / "q", "tmp": tmp_path, "closed": free_port()}
    queued_id = ""
    for argv in case.before:
        r = _run(tmp_path, "smtpmail", [a.format(**fill) for a in argv])
        queued_id = queued_id or r.stdout.strip()
    fill["id"] = queued_id
    argv = [a.format(**fill) for a in case.argv]
    if "--json" not in argv:
        argv.append("--json")
    r = _run(tmp_path, case.script, argv, case.stdin)
    assert r.status == case.status, r.stderr
    doc = check(r.stdout, r.status)
    words = name.split()
    command = " ".join(words[:2]) if words[0] == "queue" else words[0]
    assert doc["command"] == command
    if r.status:
        assert doc["error"] is not None or doc["command"] in ("queue run", "send")
        if doc["error"] is not None and doc["command"] != "probe":  # its report is the JSON
            # stderr says the same as the document
            assert doc["error"]["message"] in r.stderr
    assert case.expect(doc) is None


def _run(tmp_path: Path, script: str, argv: list[str], stdin: bytes = b"") -> CLIResult:
    home = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data")}
    return run_script(script, *argv, stdin=stdin, environ=home)


def test_json_through_postfix_smtp_sink(tmp_path: Path) -> None:
    """The same shape against another server: Postfix's smtp-sink."""
    with SmtpSink() as sink:
        argv = ["send", "--server", f"smtp://127.0.0.1:{sink.port}", *MSG, "--to", "b@x.test"]
        r = _run(tmp_path, "smtpmail", [*argv, "--json"])
    assert r.status == 0, r.stderr
    doc = check(r.stdout, 0)
    assert rcpt(doc, "b@x.test")["rcpt_reply"]["code"] == 250
    assert doc["data_reply"]["code"] == 250


def test_every_sending_or_reporting_command_takes_json() -> None:
    """The contract covers each command that sends or reports: their --help lists --json."""
    for argv in (
        ("send",), ("probe",), ("merge",), ("queue", "add"), ("queue", "list"),
        ("queue", "show"), ("queue", "run"), ("queue", "report"),
    ):  # fmt: skip
        r = run_script("smtpmail", *argv, "--help")
        assert "--json" in r.stdout, argv
        # With --json as well, the help alone: no document after it.
        assert run_script("smtpmail", *argv, "--help", "--json").stdout == r.stdout
    r = run_script("smtpmail-sendmail", "--help")
    assert "--json" in r.stdout
    assert run_script("smtpmail-sendmail", "--help", "--json").stdout == r.stdout


def test_the_documented_examples_follow_the_schema() -> None:
    """docs/json.md's examples are documents the schema accepts."""
    import json
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "json.md").read_text()
    examples = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert len(examples) == 2
    for example in examples:
        document = json.loads(example)
        check(json.dumps(document), document["exit_status"])
