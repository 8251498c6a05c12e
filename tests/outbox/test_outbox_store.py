"""The outbox store: the files on disk, atomic writes, locking, recovery, schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from email.message import EmailMessage
from pathlib import Path

import pytest

from smtpmail.errors import ConnectionLost, InvalidAddress, InvalidArgument
from smtpmail.outbox import Outbox, RetrySchedule, State
from smtpmail.outbox.outcome import apply_error, apply_result, is_busy_signal
from smtpmail.protocol.envelope import RecipientResult, SendResult
from smtpmail.protocol.reply import Reply


def test_add_writes_an_eml_and_a_json_envelope(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    queued = box.add(b"Subject: hi\r\n\r\nbody\r\n", "a@example.org", ["b@example.net", "c@x.org"])
    eml = box.eml_path(queued.id).read_bytes()
    data = json.loads(box.json_path(queued.id).read_text())
    # A Message-ID was added, so every attempt (and any duplicate) carries the same one.
    assert eml.startswith(b"Message-ID: <" + queued.id.encode() + b"@example.org>\r\n")
    assert eml.endswith(b"Subject: hi\r\n\r\nbody\r\n")
    assert data["sender"] == "a@example.org"
    assert [r["address"] for r in data["recipients"]] == ["b@example.net", "c@x.org"]
    assert {r["state"] for r in data["recipients"]} == {"queued"}
    assert data["subject"] == "hi" and data["size"] == len(eml)
    assert oct(box.eml_path(queued.id).stat().st_mode & 0o777) == "0o600"
    assert box.ids() == [queued.id]
    # nothing else left in the folder: no temporary files
    assert sorted(p.name for p in box.dir.iterdir()) == [f"{queued.id}.eml", f"{queued.id}.json"]


def test_add_keeps_an_existing_message_id_and_reads_the_envelope_from_headers(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path)
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["To"] = "bob@example.net"
    msg["Cc"] = "cy@example.net"
    msg["Message-ID"] = "<fixed@example.org>"
    msg["Subject"] = "Grüße"
    msg.set_content("hello")
    queued = box.add(msg)
    assert queued.sender == "ann@example.org"
    assert [r.address for r in queued.recipients] == ["bob@example.net", "cy@example.net"]
    assert queued.message_id == "<fixed@example.org>"
    assert queued.subject == "Grüße"
    assert box.eml_path(queued.id).read_bytes().count(b"Message-ID") == 1


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    with pytest.raises(InvalidAddress):
        box.add(b"Subject: x\n\nbody", "a@example.org", ["not an address"])
    with pytest.raises(InvalidAddress):
        box.add(b"Subject: no recipients\n\nbody")
    with pytest.raises(InvalidArgument):
        box.add(b"x", "a@example.org", ["b@example.org"], server="nohost")
    assert list(box.dir.iterdir()) == []


def test_a_claim_is_exclusive_across_processes_and_released_on_death(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    queued = box.add(b"x", "a@example.org", ["b@example.org"])
    claim = box.claim(queued.id)
    assert claim is not None
    assert box.claim(queued.id) is None  # same process, another open file: refused
    script = textwrap.dedent(
        f"""
        from smtpmail.outbox import Outbox
        print(Outbox({str(tmp_path)!r}).claim({queued.id!r}) is None)
        """
    )
    held = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert held.stdout.strip() == "True", held.stderr
    claim.release()
    free = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert free.stdout.strip() == "False", free.stderr


def test_a_claim_made_by_a_killed_process_is_recovered_as_possibly_delivered(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path)
    queued = box.add(b"x", "a@example.org", ["b@example.org", "c@example.org"])
    # A worker marks the attempt in flight, then dies holding the lock (SIGKILL).
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from smtpmail.outbox import Outbox
        box = Outbox({str(tmp_path)!r})
        claim = box.claim({queued.id!r})
        claim.message.inflight = {{"since": time.time(), "pid": os.getpid(),
                                   "recipients": ["b@example.org"]}}
        claim.save()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    claim = box.claim(queued.id, due_by=0.0)  # recovered claims are due at once
    assert claim is not None and claim.recovered
    message = box.load(queued.id)
    assert message.inflight is None and message.possible_duplicates == 1
    flags = {r.address: r.possibly_delivered for r in message.recipients}
    assert flags == {"b@example.org": True, "c@example.org": False}
    claim.release()


def test_claim_skips_messages_not_yet_due_and_done_ones(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    later = box.add(b"x", "a@example.org", ["b@example.org"], not_before=4e9)
    assert box.claim(later.id, due_by=1e9) is None
    assert box.retry() == 1
    claim = box.claim(later.id, due_by=1e9)
    assert claim is not None
    claim.message.recipients[0].state = State.DELIVERED
    claim.save()
    claim.release()
    assert box.claim(later.id) is None


def test_purge_removes_done_messages_and_orphans_but_not_pending_ones(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    pending = box.add(b"x", "a@example.org", ["b@example.org"])
    done = box.add(b"y", "a@example.org", ["b@example.org"])
    msg = box.load(done.id)
    msg.recipients[0].state = State.FAILED
    box.save(msg)
    orphan = box.dir / "0123456789ab-deadbeef.eml"  # a crash between the .eml and the .json
    orphan.write_bytes(b"z")
    os.utime(orphan, (1, 1))
    assert box.purge() == 1
    assert box.ids() == [pending.id]
    assert not orphan.exists()
    claim = box.claim(pending.id)
    assert box.purge(everything=True) == 0  # a worker holds it
    assert claim is not None
    claim.release()
    assert box.purge(everything=True) == 1 and box.ids() == []


def test_retry_schedule_grows_and_is_capped() -> None:
    s = RetrySchedule()
    assert [s.delay(n) for n in (1, 2, 3, 4, 5, 6, 100)] == [
        300,
        600,
        1200,
        2400,
        4000,
        4000,
        4000,
    ]
    assert not s.expired(0, 5 * 86400 - 1) and s.expired(0, 5 * 86400)
    with pytest.raises(ValueError):
        RetrySchedule(factor=0.5)


def _result(recipients: dict[str, Reply], data: Reply | None) -> SendResult:
    result = SendResult("a@example.org")
    for address, reply in recipients.items():
        result.recipients[address] = RecipientResult(address, reply, reply.code < 400)
    result.reply = data
    return result


def test_outcomes_per_recipient_and_give_up_after_the_maximum_age(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    queued = box.add(b"x", "a@example.org", ["ok@x.org", "later@x.org", "never@x.org"])
    ok = Reply(250, ("2.0.0 queued as 1",))
    replies = {
        "ok@x.org": Reply(250, ("ok",)),
        "later@x.org": Reply(450, ("4.2.0 mailbox busy",)),
        "never@x.org": Reply(550, ("5.1.1 no such user",)),
    }
    outcome = apply_result(queued, _result(replies, ok), None, box.schedule, now=1000.0)
    assert (outcome.delivered, outcome.deferred, outcome.failed) == (1, 1, 1)
    states = {r.address: (r.state, r.code) for r in queued.recipients}
    assert states == {
        "ok@x.org": (State.DELIVERED, 250),
        "later@x.org": (State.DEFERRED, 450),
        "never@x.org": (State.FAILED, 550),
    }
    assert queued.next_attempt == 1000.0 + 300
    # Still deferred five days later: given up, and said so.
    late = queued.created + 5 * 86400
    apply_error(queued, ConnectionLost("gone"), box.schedule, now=late)
    later = queued.recipient("later@x.org")
    assert later is not None and later.state is State.FAILED
    assert later.reply is not None and later.reply.startswith("gave up after 5 days")
    assert queued.done and queued.finished == late


def test_recipients_delivered_before_a_later_transaction_broke_stay_delivered(
    tmp_path: Path,
) -> None:
    # Recipients over a server's limit go in further transactions (RFC 5321
    # §4.5.3.1.10); the connection broke after the second one's data.
    box = Outbox(tmp_path)
    queued = box.add(b"x", "a@example.org", ["first@x.org", "second@x.org", "third@x.org"])
    ok = Reply(250, ("2.0.0 queued",))
    result = SendResult("a@example.org")
    result.recipients["first@x.org"] = RecipientResult("first@x.org", ok, True)
    result.recipients["second@x.org"] = RecipientResult("second@x.org", ok, True, at_rcpt=True)
    too_many = Reply(452, ("4.5.3 too many recipients",))
    result.recipients["third@x.org"] = RecipientResult("third@x.org", too_many, False, at_rcpt=True)
    lost = ConnectionLost("gone")
    lost.possibly_delivered = True
    outcome = apply_result(queued, result, lost, box.schedule, now=1000.0)
    assert (outcome.delivered, outcome.deferred, outcome.failed) == (1, 2, 0)
    states = {r.address: (r.state, r.possibly_delivered) for r in queued.recipients}
    assert states == {
        "first@x.org": (State.DELIVERED, False),
        "second@x.org": (State.DEFERRED, True),
        "third@x.org": (State.DEFERRED, False),
    }


def test_busy_signals() -> None:
    assert is_busy_signal(Reply(421, ("4.7.0 too many connections",)))
    assert is_busy_signal(Reply(450, ("4.7.1 slow down",)))
    assert not is_busy_signal(Reply(450, ("4.2.0 mailbox busy",)))
    assert not is_busy_signal(Reply(550, ("5.7.1 relaying denied",)))


def test_an_unreadable_state_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    good = box.add(b"x", "a@example.org", ["b@example.org"])
    bad = box.add(b"y", "a@example.org", ["b@example.org"])
    box.json_path(bad.id).write_text("{ not json")
    assert [m.id for m in box.messages()] == [good.id]
    assert box.claim(bad.id) is None
