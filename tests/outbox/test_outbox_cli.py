"""``smtpmail queue``, ``smtpmail send --queue`` and ``smtpmail merge`` against aiosmtpd."""

from __future__ import annotations

import email
import email.policy
import io
import json
from pathlib import Path

import pytest

from smtpmail.cli import main
from smtpmail.cli.environment import Environment
from smtpmail.cli.progress import ProgressBar
from smtpmail.outbox import Outbox
from support.clirun import fake_env
from support.servers import RecordingServer


def _run(tmp_path: Path, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    env = fake_env(tmp_path, argv)
    env.stdin = io.StringIO(stdin)
    status = main(env=env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return status, env.stdout.getvalue(), env.stderr.getvalue()


def _queue(tmp_path: Path) -> list[str]:
    return ["queue", "--queue-dir", str(tmp_path / "q")]


LETTER = "From: a@example.org\nTo: b@example.net, c@example.net\nSubject: queued\n\nhello\n"


def test_queue_add_list_run_show_report_purge(tmp_path: Path, smtpd: RecordingServer) -> None:
    smtpd.handler.refuse = {"c@example.net": "550 5.1.1 no such user"}
    status, out, _ = _run(tmp_path, [*_queue(tmp_path), "add"], LETTER)
    assert status == 0
    msg_id = out.strip()
    status, out, _ = _run(tmp_path, [*_queue(tmp_path), "list"])
    assert msg_id in out and "queued" in out and "b@example.net(q)" in out
    status, out, _ = _run(tmp_path, [*_queue(tmp_path), "run", "--port", str(smtpd.port)])
    assert status == 69  # a recipient failed for good
    assert "1 delivered, 1 failed" in out
    assert [m.rcpt_tos for m in smtpd.messages] == [["b@example.net"]]
    status, out, _ = _run(tmp_path, [*_queue(tmp_path), "show", msg_id[:10], "--json"])
    (record,) = json.loads(out)["messages"]
    states = {r["address"]: r["status"] for r in record["recipients"]}
    assert states == {"b@example.net": "delivered", "c@example.net": "failed"}
    status, out, _ = _run(tmp_path, [*_queue(tmp_path), "report"])
    assert "<c@example.net>: 550 5.1.1 no such user" in out and "Subject" not in out
    status, out, _ = _run(tmp_path, [*_queue(tmp_path), "report", "--json"])
    (entry,) = json.loads(out)["failures"]
    assert entry["recipient"] == "c@example.net" and entry["code"] == 550
    assert entry["subject"] == "queued" and entry["id"] == msg_id
    # done messages are not listed by default; purge removes them
    assert "nothing is waiting" in _run(tmp_path, [*_queue(tmp_path), "list"])[1]
    assert "1 message(s) removed" in _run(tmp_path, [*_queue(tmp_path), "purge"])[1]
    assert _run(tmp_path, [*_queue(tmp_path), "show", msg_id])[0] == 65


def test_queue_run_exits_tempfail_and_retry_makes_it_due(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    smtpd.handler.refuse = {"b@example.net": ["451 4.3.0 try later"]}
    _run(tmp_path, [*_queue(tmp_path), "add", "-f", "a@example.org", "b@example.net"], LETTER)
    run = [*_queue(tmp_path), "run", "--port", str(smtpd.port)]
    assert _run(tmp_path, run)[0] == 75
    status, out, _ = _run(tmp_path, run)  # not due yet: nothing tried
    assert status == 0 and out.startswith("0 message(s) tried")
    assert "1 message(s) due now" in _run(tmp_path, [*_queue(tmp_path), "retry"])[1]
    assert _run(tmp_path, run)[0] == 0
    assert len(smtpd.messages) == 1


def test_send_queue_delivers_now_or_keeps_the_message(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    smtpd.handler.refuse = {"later@example.net": ["450 4.2.1 mailbox busy"]}
    base = ["send", "--port", str(smtpd.port), "--from", "a@example.org", "--subject", "s"]
    qdir = ["--queue-dir", str(tmp_path / "q")]
    status, _, err = _run(
        tmp_path, [*base, "--to", "now@example.net", "--body", "x", "--queue", *qdir]
    )
    assert status == 0 and err == ""
    status, _, err = _run(
        tmp_path, [*base, "--to", "later@example.net", "--body", "x", "--queue", *qdir]
    )
    assert status == 0  # safe in the outbox
    assert "deferred: 450 4.2.1 mailbox busy" in err and "queued as" in err
    assert [m.rcpt_tos for m in smtpd.messages] == [["now@example.net"]]
    box = Outbox(tmp_path / "q")
    assert [m.status for m in box.messages()] == ["delivered", "deferred"]
    box.retry()
    assert _run(tmp_path, [*_queue(tmp_path), "run", "--port", str(smtpd.port)])[0] == 0
    assert [m.rcpt_tos for m in smtpd.messages][-1] == ["later@example.net"]
    # --queue-only sends nothing
    status, _, err = _run(
        tmp_path, [*base, "--to", "x@example.net", "--body", "x", "--queue-only", *qdir]
    )
    assert status == 0 and len(smtpd.messages) == 2 and "queued as" in err


TEMPLATE = """\
From: Ann <ann@example.org>
To: {{name}} <{{ email }}>
Subject: Hello {{name}}

Dear {{name}}, your code is {{code}}.
"""


def _merge_files(tmp_path: Path, rows: str) -> list[str]:
    (tmp_path / "letter.eml").write_text(TEMPLATE)
    (tmp_path / "people.csv").write_text("name,email,code\n" + rows)
    return [
        "merge",
        "--template",
        str(tmp_path / "letter.eml"),
        "--data",
        str(tmp_path / "people.csv"),
        "--queue-dir",
        str(tmp_path / "q"),
    ]


def test_merge_sends_one_message_per_row_with_a_summary(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    smtpd.handler.refuse = {"cy@example.net": "550 5.1.1 no such user"}
    rows = "Bob,bob@example.net,1\nJürgen,j@example.net,2\nCy,cy@example.net,3\n"
    status, out, err = _run(tmp_path, [*_merge_files(tmp_path, rows), "--port", str(smtpd.port)])
    assert status == 69
    # plain progress lines (no terminal), then the summary table and the failures
    lines = err.splitlines()  # (two connections: the order of the lines may vary)
    assert [line[:4] for line in lines] == ["1/3 ", "2/3 ", "3/3 "] and "\r" not in err
    assert any("failed" in line and "<cy@example.net>" in line for line in lines)
    assert "delivered          2           2" in out and "failed             1           1" in out
    assert "<cy@example.net>: 550 5.1.1 no such user" in out
    by_rcpt = {m.rcpt_tos[0]: m for m in smtpd.messages}
    assert set(by_rcpt) == {"bob@example.net", "j@example.net"}
    parsed = email.message_from_bytes(by_rcpt["j@example.net"].content, policy=email.policy.default)
    assert (
        str(parsed["Subject"]) == "Hello Jürgen" and str(parsed["To"]) == "Jürgen <j@example.net>"
    )
    assert parsed.get_content().strip() == "Dear Jürgen, your code is 2."  # type: ignore[attr-defined]
    assert by_rcpt["j@example.net"].content.isascii()  # RFC 2047 and quoted-printable


def test_merge_checks_every_row_before_sending_anything(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    injection = 'Bob,bob@example.net,1\n"Eve\nBcc: x@evil.example",eve@example.net,2\n'
    argv = [*_merge_files(tmp_path, injection), "--port", str(smtpd.port)]
    status, _, err = _run(tmp_path, argv)
    assert status == 65 and "row 2" in err and "line break" in err
    (tmp_path / "people.csv").write_text("name,email\nBob,bob@example.net\n")  # no 'code'
    status, _, err = _run(tmp_path, argv)
    assert status == 65 and "code" in err
    assert smtpd.messages == [] and not list((tmp_path / "q").glob("messages/*"))


def test_merge_queue_only_and_dry_run(tmp_path: Path) -> None:
    argv = _merge_files(tmp_path, "Bob,bob@example.net,1\nCy,cy@example.net,2\n")
    status, out, _ = _run(tmp_path, [*argv, "--dry-run"])
    assert status == 0 and out.startswith("# 2 message(s)") and "To: Bob <bob@example.net>" in out
    assert not (tmp_path / "q").exists()
    status, out, _ = _run(tmp_path, [*argv, "--queue-only"])
    assert status == 0 and "2 message(s) queued" in out
    assert [m.sender for m in Outbox(tmp_path / "q").messages()] == ["ann@example.org"] * 2


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    now = [0.0]
    stream = _Tty()
    bar = ProgressBar(4, stream, tty=True, clock=lambda: now[0])
    for _ in range(2):
        now[0] += 1.0
        bar.advance("ignored on a terminal")
    assert bar.line() == "[############------------] 2/4  50%     1.0 msg/s  ETA 0:02"
    now[0] += 1.0
    bar.advance("x")
    now[0] += 1.0
    bar.advance("x")
    bar.finish()
    text = stream.getvalue()
    assert text.startswith("\r[") and text.endswith("4/4 100%     1.0 msg/s  ETA 0:00\x1b[K\n")
    assert "ignored" not in text and text.count("\n") == 1


def test_merge_on_a_terminal_shows_the_bar(tmp_path: Path, smtpd: RecordingServer) -> None:
    argv = _merge_files(tmp_path, "Bob,bob@example.net,1\n")
    env: Environment = fake_env(tmp_path, [*argv, "--port", str(smtpd.port), "--json"])
    env.stderr = _Tty()
    assert main(env=env) == 0
    assert "\r[" in env.stderr.getvalue() and "1/1 100%" in env.stderr.getvalue()
    assert isinstance(env.stdout, io.StringIO)
    document = json.loads(env.stdout.getvalue())
    summary = document["summary"]
    assert summary["messages"] == 1 and document["failures"] == []
    assert summary["states"]["delivered"] == {"messages": 1, "recipients": 1}


def test_queue_run_watch_delivers_new_mail_and_stops_on_sigterm(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    import signal
    import subprocess
    import sys
    import time

    queue = [sys.executable, "-m", "smtpmail", *_queue(tmp_path)]
    watcher = subprocess.Popen(
        [*queue, "run", "--watch", "--poll", "0.1", "--port", str(smtpd.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for n in range(2):  # mail queued while it runs is picked up
            add = subprocess.run(
                [*queue, "add", "-f", "a@example.org", "b@example.net"],
                input=f"Subject: {n}\n\nx\n".encode(),
                check=True,
            )
            assert add.returncode == 0
            # A generous bound, not a timing assertion: a loaded CI machine can
            # take seconds to start the `queue add` process and the watcher's poll.
            deadline = time.monotonic() + 60
            while len(smtpd.messages) <= n and time.monotonic() < deadline:
                time.sleep(0.02)
        assert len(smtpd.messages) == 2
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert out.decode().count("1 delivered") == 2


# Records a hand edit, a foreign tool or a disk fault may leave: valid JSON of the
# wrong shape. Each is that one message's problem, never the whole queue's.
MALFORMED_RECORDS = [
    "[]",
    "{}",
    '{"sender": "a@example.org", "recipients": []}',
    '{"id": "x", "sender": "a@example.org", "recipients": null}',
    '{"id": "x", "sender": "a@example.org", "recipients": [1]}',
    '{"id": "x", "sender": "a@example.org", "recipients": [{"state": "queued"}]}',
    '{"id": "x", "sender": "a@example.org", "recipients": [], "attempts": null}',
    '{"id": "x", "sender": "a@example.org", "recipients": [], "version": "two"}',
]


@pytest.mark.parametrize("record", MALFORMED_RECORDS)
def test_a_malformed_record_is_skipped_loudly_and_the_rest_is_delivered(
    tmp_path: Path, smtpd: RecordingServer, record: str
) -> None:
    box = Outbox(tmp_path / "q")
    good = box.add(LETTER.encode(), "a@example.org", ["b@example.net"])
    bad = box.add(LETTER.encode(), "a@example.org", ["c@example.net"])
    box.json_path(bad.id).write_text(record)
    status, out, err = _run(tmp_path, [*_queue(tmp_path), "list"])
    assert status == 0 and good.id in out and bad.id not in out
    assert f"message {bad.id}: unreadable state, skipped" in err
    status, out, err = _run(tmp_path, [*_queue(tmp_path), "run", "--port", str(smtpd.port)])
    assert status == 0 and "1 message(s) tried: 1 recipient(s) delivered" in out
    assert f"message {bad.id}: unreadable state, skipped" in err
    assert [m.rcpt_tos for m in smtpd.messages] == [["b@example.net"]]
    assert box.json_path(bad.id).read_text() == record  # left for a person to look at


def test_a_message_whose_eml_was_removed_is_deferred_then_reported_never_dropped(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    box = Outbox(tmp_path / "q")
    gone = box.add(LETTER.encode(), "a@example.org", ["c@example.net"])
    kept = box.add(LETTER.encode(), "a@example.org", ["b@example.net"])
    box.eml_path(gone.id).unlink()
    # purge removes done messages only: this one is still owed to its recipient
    assert "0 message(s) removed" in _run(tmp_path, [*_queue(tmp_path), "purge"])[1]
    run = [*_queue(tmp_path), "run", "--port", str(smtpd.port)]
    status, out, _ = _run(tmp_path, run)
    assert status == 75 and f"{gone.id} <a@example.org>: 1 deferred" in out
    assert [m.rcpt_tos for m in smtpd.messages] == [["b@example.net"]]
    (c,) = box.load(gone.id).recipients
    assert c.state.value == "deferred" and "the queued copy is missing" in (c.reply or "")
    # past the give-up age it fails, and the report names it
    _run(tmp_path, [*_queue(tmp_path), "retry"])
    assert _run(tmp_path, [*run, "--give-up", "0"])[0] == 69
    status, out, _ = _run(tmp_path, [*_queue(tmp_path), "report", "--json"])
    (entry,) = json.loads(out)["failures"]
    assert entry["id"] == gone.id and entry["recipient"] == "c@example.net"
    assert [m.rcpt_tos for m in smtpd.messages] == [["b@example.net"]]
    assert box.load(kept.id).done
    assert "2 message(s) removed" in _run(tmp_path, [*_queue(tmp_path), "purge"])[1]


@pytest.mark.parametrize("action", ["show", "retry", "purge"])
def test_naming_a_malformed_record_is_a_data_error_that_says_which(
    tmp_path: Path, action: str
) -> None:
    box = Outbox(tmp_path / "q")
    bad = box.add(LETTER.encode(), "a@example.org", ["c@example.net"])
    box.json_path(bad.id).write_text("{ not json")
    status, _, err = _run(tmp_path, [*_queue(tmp_path), action, bad.id[:10]])
    assert status == 65, err
    assert f"message {bad.id}" in err and "unreadable state" in err
    assert "internal error" not in err


def test_a_truncated_eml_is_never_sent_as_it_is_and_goes_once_restored(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    box = Outbox(tmp_path / "q")
    queued = box.add(LETTER.encode(), "a@example.org", ["b@example.net"])
    stored = box.eml_path(queued.id).read_bytes()
    box.eml_path(queued.id).write_bytes(stored[:40])  # a disk fault, a hand edit
    run = [*_queue(tmp_path), "run", "--port", str(smtpd.port)]
    assert _run(tmp_path, run)[0] == 75
    assert smtpd.messages == []
    (r,) = box.load(queued.id).recipients
    assert r.state.value == "deferred" and not r.possibly_delivered
    assert f"the queued copy is 40 octets, not the {len(stored)} stored" in (r.reply or "")
    box.eml_path(queued.id).write_bytes(stored)  # restored from a backup
    _run(tmp_path, [*_queue(tmp_path), "retry"])
    assert _run(tmp_path, run)[0] == 0
    (got,) = smtpd.messages
    assert got.content.replace(b"\r\n", b"\n") == stored.replace(b"\r\n", b"\n")


def test_queue_add_with_recipients_needs_no_recipient_header(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    status, _, err = _run(
        tmp_path, [*_queue(tmp_path), "add", "r@example.net"], "From: a@example.org\n\nhello\n"
    )
    assert status == 0, err
    assert _run(tmp_path, [*_queue(tmp_path), "run", "--port", str(smtpd.port)])[0] == 0
    assert [(m.mail_from, m.rcpt_tos) for m in smtpd.messages] == [
        ("a@example.org", ["r@example.net"])
    ]


def test_merge_to_column_needs_no_recipient_header(tmp_path: Path, smtpd: RecordingServer) -> None:
    (tmp_path / "t.eml").write_text("From: a@example.org\nSubject: hi {{name}}\n\nDear {{name}}\n")
    (tmp_path / "d.csv").write_text("name,email\nBob,bob@example.net\nAnn,ann@example.net\n")
    argv = ["merge", "--template", str(tmp_path / "t.eml"), "--data", str(tmp_path / "d.csv")]
    argv += ["--to-column", "email", "--queue-dir", str(tmp_path / "q")]
    status, _, err = _run(tmp_path, [*argv, "--port", str(smtpd.port)])
    assert status == 0, err
    assert sorted(m.rcpt_tos[0] for m in smtpd.messages) == ["ann@example.net", "bob@example.net"]


def test_merge_run_again_counts_only_what_it_sends(tmp_path: Path, smtpd: RecordingServer) -> None:
    smtpd.handler.refuse = {"cy@example.net": ["451 4.3.0 try later"]}
    rows = "Bob,bob@example.net,1\nAnn,ann@example.net,2\nCy,cy@example.net,3\n"
    merge = [*_merge_files(tmp_path, rows), "--port", str(smtpd.port)]
    assert _run(tmp_path, merge)[0] == 75
    _run(tmp_path, [*_queue(tmp_path), "retry"])
    status, _, err = _run(tmp_path, merge)  # the two delivered are not sent again
    assert status == 0
    lines = err.splitlines()
    assert lines[0] == "smtpmail: 3 row(s) already queued by an earlier run, skipped"
    assert [line[:4] for line in lines[1:]] == ["1/1 "], err
    assert sorted(m.rcpt_tos[0] for m in smtpd.messages) == [
        "ann@example.net",
        "bob@example.net",
        "cy@example.net",
    ]


@pytest.mark.parametrize(
    "action", [["list"], ["report"], ["purge"], ["show", "x"], ["retry", "x"], ["migrate"]]
)
def test_a_queue_dir_with_no_outbox_is_a_usage_error(tmp_path: Path, action: list[str]) -> None:
    """A mistyped --queue-dir is not an empty queue: only adding and a worker
    (test_queue_run_watch_delivers_new_mail_and_stops_on_sigterm) make an outbox."""
    status, out, err = _run(tmp_path, ["queue", "--queue-dir", str(tmp_path / "qq"), *action])
    assert status == 64, err
    assert "no outbox there" in err and out == ""
    assert not (tmp_path / "qq").exists()  # nothing was made by looking


def test_queue_add_makes_the_outbox_it_names(tmp_path: Path) -> None:
    status, out, err = _run(tmp_path, [*_queue(tmp_path), "add"], LETTER)
    assert status == 0, err
    assert (tmp_path / "q").is_dir()
    assert out.strip() in _run(tmp_path, [*_queue(tmp_path), "list"])[1]


def test_the_outbox_may_be_named_after_the_action(tmp_path: Path, smtpd: RecordingServer) -> None:
    """``queue list --queue-dir DIR`` (as ``merge`` and ``send --queue`` take it) was
    'unrecognized arguments' (64): only ``queue --queue-dir DIR list`` worked.
    Either place names the outbox; given in both, the one after the action wins."""
    q, other = str(tmp_path / "q"), str(tmp_path / "other")
    status, out, err = _run(tmp_path, ["queue", "add", "--queue-dir", q], LETTER)
    assert status == 0, err
    msg_id = out.strip()
    assert msg_id in _run(tmp_path, ["queue", "list", "--queue-dir", q])[1]
    assert msg_id in _run(tmp_path, ["queue", "--queue-dir", q, "list"])[1]
    assert msg_id in _run(tmp_path, ["queue", "--queue-dir", other, "list", "--queue-dir", q])[1]
    status, _, err = _run(tmp_path, ["queue", "list", "--queue-dir", other])
    assert status == 64 and "no outbox there" in err
    status, _, err = _run(tmp_path, ["queue", "run", "--queue-dir", q, "--port", str(smtpd.port)])
    assert status == 0, err
    assert sorted(r for m in smtpd.messages for r in m.rcpt_tos) == [
        "b@example.net",
        "c@example.net",
    ]
