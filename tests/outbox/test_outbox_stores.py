"""The store contract: every test runs against the folder and the PostgreSQL outbox.

The same records, states, retry schedule and "possibly delivered" rule; what
differs (files and flock, rows and leases) is tested by what a user sees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smtpmail import Envelope, TLSOptions
from smtpmail.errors import InvalidAddress
from smtpmail.outbox import (
    Outbox,
    QueuedMessage,
    RetrySchedule,
    State,
    Worker,
)
from smtpmail.outbox.postgres import CHUNK_SIZE
from support.nodeserver import NodeSMTPServer
from support.outboxevents import Events
from support.servers import RecordingServer
from support.tlsservers import Certs


def _open(location: str, **kwargs: object) -> Outbox:
    box = Outbox(location, **kwargs)
    box.migrate()
    return box


@pytest.fixture(params=["folder", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        return str(tmp_path / "outbox")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def box(location: str) -> Iterator[Outbox]:
    with _open(location, schedule=RetrySchedule(first=0)) as opened:
        yield opened


def _message(n: int) -> bytes:
    return f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode()


def test_a_queued_message_comes_back_as_it_was_stored(box: Outbox) -> None:
    queued = box.add(b"Subject: hi\r\n\r\nbody\r\n", "a@example.org", ["b@example.net", "c@x.org"])
    loaded = box.load(queued.id)
    assert loaded.to_json() == queued.to_json()
    assert [m.id for m in box.messages()] == box.ids() == [queued.id]
    assert box.find(queued.id[:10]).id == queued.id
    claim = box.claim(queued.id)
    assert claim is not None
    with claim:
        data = claim.content.read()
    # A Message-ID was added, so every attempt (and any duplicate) carries the same one.
    assert data.startswith(b"Message-ID: <" + queued.id.encode() + b"@example.org>\r\n")
    assert data.endswith(b"Subject: hi\r\n\r\nbody\r\n") and len(data) == queued.size
    with pytest.raises(KeyError):
        box.load("0123456789ab-01234567")


def test_bad_input_queues_nothing(box: Outbox) -> None:
    with pytest.raises(InvalidAddress):
        box.add(b"Subject: x\n\nbody", "a@example.org", ["not an address"])
    assert box.ids() == []


def test_a_large_message_is_streamed_in_and_out_and_read_again_after_a_seek(
    box: Outbox,
) -> None:
    body = b"".join(b"line %07d\r\n" % i for i in range((2 * CHUNK_SIZE) // 14 + 777))
    queued = box.add(b"Subject: big\r\n\r\n" + body, "a@example.org", ["b@example.net"])
    claim = box.claim(queued.id)
    assert claim is not None
    with claim:
        first = b"".join(iter(lambda: claim.content.read(10_000), b""))
        claim.content.seek(0)
        again = claim.content.read()
    assert first == again and first.endswith(body) and len(first) == queued.size


def test_a_claim_is_exclusive_until_released(location: str, box: Outbox) -> None:
    queued = box.add(b"x", "a@example.org", ["b@example.org"])
    claim = box.claim(queued.id)
    assert claim is not None
    assert box.claim(queued.id) is None
    with Outbox(location) as other:  # another worker (another process would do the same)
        assert other.claim(queued.id) is None
        claim.release()
        taken = other.claim(queued.id)
        assert taken is not None and not taken.recovered
        taken.release()


def test_an_attempt_left_in_flight_is_retried_as_possibly_delivered(
    location: str, box: Outbox
) -> None:
    queued = box.add(b"x", "a@example.org", ["b@example.org", "c@example.org"])
    claim = box.claim(queued.id)
    assert claim is not None
    claim.message.inflight = {"since": 1.0, "pid": 1, "recipients": ["b@example.org"]}
    claim.save()
    claim.release()  # as a worker that died: the mark stays, the lock (or lease) goes
    with Outbox(location) as other:
        again = other.claim(queued.id, due_by=0.0)  # recovered claims are due at once
        assert again is not None and again.recovered
        again.release()
    message = box.load(queued.id)
    assert message.inflight is None and message.possible_duplicates == 1
    flags = {r.address: r.possibly_delivered for r in message.recipients}
    assert flags == {"b@example.org": True, "c@example.org": False}


def test_what_a_worker_routes_by_is_each_due_message_its_server_and_first_pending_recipient(
    box: Outbox,
) -> None:
    plain = box.add(b"x", "a@example.org", ["b@one.example", "c@two.example"])
    own = box.add(b"x", "a@example.org", ["d@three.example"], server="[::1]:2525")
    box.add(b"x", "a@example.org", ["e@four.example"], not_before=4e9)  # not due
    done = box.add(b"x", "a@example.org", ["f@five.example"])
    for msg_id in (plain.id, done.id):
        claim = box.claim(msg_id)
        assert claim is not None
        claim.message.recipients[0].state = State.DELIVERED
        claim.finish()
    due = [(d.id, d.server, d.recipient) for d in box.due_for_routing(3e9)]
    assert due == [(plain.id, None, "c@two.example"), (own.id, "[::1]:2525", "d@three.example")]
    assert [d.id for d in box.due_for_routing(3e9, [own.id])] == [own.id]
    assert [m.id for m in box.due(3e9)] == [d for d, _, _ in due]


def test_claim_skips_messages_not_yet_due_and_done_ones(box: Outbox) -> None:
    later = box.add(b"x", "a@example.org", ["b@example.org"], not_before=4e9)
    assert box.claim(later.id, due_by=1e9) is None
    assert [m.id for m in box.due(1e9)] == []
    assert box.next_due() == 4e9
    assert box.retry() == 1
    assert [m.id for m in box.due(1e9)] == [later.id]
    claim = box.claim(later.id, due_by=1e9)
    assert claim is not None
    claim.message.recipients[0].state = State.DELIVERED
    claim.save()
    claim.release()
    assert box.claim(later.id) is None
    assert box.load(later.id).done and box.next_due() is None


def test_purge_removes_done_messages_and_remembers_their_keys(box: Outbox) -> None:
    done = box.add(b"x", "a@example.org", ["b@example.org"], key="row-1")
    pending = box.add(b"y", "a@example.org", ["b@example.org"], key="row-2")
    claim = box.claim(done.id)
    assert claim is not None
    claim.message.recipients[0].state = State.FAILED
    claim.save()
    claim.release()
    assert box.keys() == {"row-1": done.id, "row-2": pending.id}
    assert box.purge() == 1
    assert box.ids() == [pending.id]
    assert box.keys() == {"row-1": None, "row-2": pending.id}
    held = box.claim(pending.id)
    assert held is not None
    assert box.purge(everything=True) == 0  # never a message a worker holds
    held.release()
    assert box.purge(everything=True) == 1
    assert box.ids() == [] and box.keys() == {"row-1": None}


def test_the_worker_delivers_through_a_real_server_and_records_each_state(
    box: Outbox, smtpd: RecordingServer
) -> None:
    smtpd.handler.refuse = {
        "later@example.net": ["450 4.2.1 mailbox busy"],  # 450 now, accepted on the retry
        "never@example.net": "550 5.1.1 no such user",
    }
    ids = [box.add(_message(i), "a@example.org", [f"r{i}@example.net"]).id for i in range(30)]
    mixed = box.add(
        _message(99), "a@example.org", ["ok@example.net", "later@example.net", "never@example.net"]
    )
    stats = Worker(box, port=smtpd.port, connections=2, per_server=2, batch=7).run()
    assert stats.messages_done == 30 and stats.delivered == 31 and stats.failed == 1
    states = {r.address: r.state for r in box.load(mixed.id).recipients}
    assert states == {
        "ok@example.net": State.DELIVERED,
        "later@example.net": State.DEFERRED,
        "never@example.net": State.FAILED,
    }
    assert all(box.load(i).status == "delivered" for i in ids)
    stats = Worker(box, port=smtpd.port).run()  # the retry (first=0): due at once
    assert stats.delivered == 1 and box.load(mixed.id).done
    assert len(smtpd.messages) == 32
    assert sorted(m.subject for m in box.messages()) == sorted(
        [f"message {i}" for i in range(30)] + ["message 99"]
    )


def test_the_observer_hears_each_attempt_and_each_abandoned_one(
    location: str, box: Outbox, smtpd: RecordingServer
) -> None:
    events = Events()
    box.observer = events
    smtpd.handler.refuse = {"never@example.net": "550 5.1.1 no such user"}
    queued = box.add(_message(1), "a@example.org", ["b@example.net", "never@example.net"])
    Worker(box, port=smtpd.port).run()
    where = f"127.0.0.1:{smtpd.port}"
    assert events.seen == [
        ("started", queued.id, where),
        ("finished", queued.id, where, [250, 550], True),
    ]
    left = box.add(_message(2), "a@example.org", ["b@example.net"])
    claim = box.claim(left.id)
    assert claim is not None
    claim.message.inflight = {"since": 1.0, "pid": 1, "recipients": ["b@example.net"]}
    claim.save()
    claim.release()
    events.seen.clear()
    Worker(box, port=smtpd.port).run()
    assert [e[0] for e in events.seen] == ["abandoned", "started", "finished"]


def test_requiretls_is_stored_and_every_attempt_asks_for_it(box: Outbox) -> None:
    """RFC 8689 §4.2.1: the flag is part of the queued envelope, in both stores."""
    queued = box.add(
        _message(1), envelope=Envelope("a@example.org", ["b@example.net"], requiretls=True)
    )
    plain = box.add(_message(2), "a@example.org", ["b@example.net"])
    loaded = box.load(queued.id)
    assert loaded.requiretls and loaded.to_json() == queued.to_json()
    assert box.envelope(loaded).requiretls
    assert not box.envelope(box.load(plain.id)).requiretls


@pytest.fixture(scope="module")
def requiretls_server(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cert, key = certs.leaf_files(tmp_path_factory.mktemp("leaf"))
    with NodeSMTPServer(cert, key, requiretls=True, auth_optional=True) as server:
        yield server


@pytest.mark.parametrize(("verified", "state"), [(True, State.DELIVERED), (False, State.FAILED)])
def test_the_worker_sends_a_requiretls_message_only_over_verified_tls(
    box: Outbox, requiretls_server: Any, certs: Certs, verified: bool, state: State
) -> None:
    """A server that offers REQUIRETLS gets it over a verified connection; over
    TLS with an unchecked certificate the message fails (5.7.30) unsent."""
    if verified:
        options = TLSOptions(ca_file=certs.ca_file, server_hostname="localhost")
    else:
        options = TLSOptions(verify_insecure_off=True)
    envelope = Envelope("a@example.org", ["b@example.net"], requiretls=True)
    queued = box.add(_message(3), envelope=envelope)
    before = len(requiretls_server.messages)
    Worker(box, port=requiretls_server.port, tls="starttls", tls_options=options).run()
    (recipient,) = box.load(queued.id).recipients
    assert recipient.state is state, recipient
    if verified:
        assert [m["requireTLS"] for m in _node_messages(requiretls_server, before)] == [True]
    else:
        assert "REQUIRETLS needs TLS with a verified certificate" in str(recipient.reply)
        assert requiretls_server.messages[before:] == []


def _node_messages(server: Any, before: int) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + 10  # the server reports each message on its stdout
    while len(server.messages) <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(server.messages[before:])


# -- one schedule per recipient ----------------------------------------------------


def test_each_recipient_has_its_own_next_attempt_and_only_due_ones_are_retried(
    location: str, smtpd: RecordingServer
) -> None:
    """Issue 16: one row per recipient with its own next attempt. A recipient
    deferred twice waits longer than one deferred once; the message is due at
    the earliest of them, and an attempt goes to the due recipients only."""
    schedule = RetrySchedule(first=300, factor=24, maximum=86400)
    smtpd.handler.refuse = {
        "slow@slow.example": ["451 4.3.0 later", "451 4.3.0 later again"],
        "soon@soon.example": ["451 4.3.0 later", "451 4.3.0 later again"],
    }
    rcpts = ["slow@slow.example", "soon@soon.example", "ok@ok.example"]
    with _open(location, schedule=schedule) as box:
        queued = box.add(_message(1), "a@example.org", rcpts)
        Worker(box, port=smtpd.port).run()
        message = box.load(queued.id)
        slow, soon, ok = message.recipients
        assert ok.state is State.DELIVERED
        for r in (slow, soon):
            assert r.state is State.DEFERRED and r.updated is not None
            assert r.next_attempt == r.updated + 300  # the schedule after one attempt
        assert message.next_attempt == min(slow.next_attempt, soon.next_attempt)
        # Time passes: soon.example's retry has come, slow.example's is 2 h off.
        claim = box.claim(queued.id)
        assert claim is not None
        later = claim.due_by + 7200
        claim.message.recipients[0].next_attempt = later
        claim.message.recipients[1].next_attempt = claim.due_by - 1
        claim.message.reschedule()
        claim.save()
        claim.release()
        assert box.load(queued.id).next_attempt < later  # not held back by slow.example
        Worker(box, port=smtpd.port).run()
        message = box.load(queued.id)
        slow, soon, ok = message.recipients
        assert (slow.state, slow.attempts, slow.next_attempt) == (State.DEFERRED, 1, later)
        assert (soon.state, soon.attempts) == (State.DEFERRED, 2)
        assert soon.updated is not None and soon.next_attempt == soon.updated + 300 * 24
        assert message.next_attempt == min(later, soon.next_attempt)
        assert [m.rcpt_tos for m in smtpd.messages] == [["ok@ok.example"]]
        rcpt_lines = [line for line in smtpd.commands() if line.upper().startswith(b"RCPT")]
        assert sum(b"slow@slow.example" in line for line in rcpt_lines) == 1  # not retried
        assert sum(b"soon@soon.example" in line for line in rcpt_lines) == 2
        # `queue retry` makes every pending recipient due now.
        assert box.retry() == 1
        message = box.load(queued.id)
        assert all(r.next_attempt <= time.time() for r in message.pending)


def test_a_record_older_than_per_recipient_schedules_is_read_with_the_messages() -> None:
    old = QueuedMessage.from_json(
        {
            "version": 1,
            "id": "0123456789ab-01234567",
            "sender": "a@example.org",
            "next_attempt": 1234.5,
            "recipients": [
                {"address": "b@example.net", "state": "deferred", "attempts": 1},
                {"address": "c@example.net", "state": "delivered", "attempts": 1},
            ],
        }
    )
    assert [r.next_attempt for r in old.recipients] == [1234.5, 1234.5]
    assert [r.address for r in old.due(1234.5)] == ["b@example.net"]
    assert old.due(1234.0) == []
