"""The outbox worker against real aiosmtpd servers (and a scripted one for drops)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from smtpmail.outbox import Outbox, RetrySchedule, State, Worker
from support.hostile.scripted import (
    ScriptedServer,
    close,
    drop_after_dot,
    drop_mid_data,
    plain,
    read_data,
    until_data,
)
from support.outboxevents import Events
from support.servers import ConnectionCount, Recorder, RecordingServer


def _message(n: int) -> bytes:
    return f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode()


def test_many_messages_share_few_connections_and_all_are_delivered(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    box = Outbox(tmp_path)
    ids = [box.add(_message(i), "a@example.org", [f"r{i}@example.net"]).id for i in range(60)]
    stats = Worker(box, port=smtpd.port, connections=2, per_server=2, batch=25).run()
    assert stats.delivered == 60 and stats.messages_done == 60
    assert len(smtpd.messages) == 60
    # (aiosmtpd's own readiness check is an empty connection)
    assert len([w for w in smtpd.wire if w]) <= 2  # connections reused for many messages
    for msg_id in ids:
        msg = box.load(msg_id)
        assert msg.done and msg.status == "delivered"
        assert msg.recipients[0].reply is not None and msg.recipients[0].reply.startswith("250")


@dataclass
class _HoldsFirstUntilTwoConnections(Recorder):
    """Holds the first message's end of data until a second connection opens
    (at most 10 s): a worker that left its second connection nothing to send
    delivers everything over one, after the wait."""

    count: ConnectionCount | None = None
    held: bool = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        deadline = time.monotonic() + 10
        while not self.held and self.count is not None and self.count.now < 2:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        self.held = True
        return await super().handle_DATA(server, session, envelope)


def test_fewer_messages_than_a_batch_are_shared_among_the_connections(tmp_path: Path) -> None:
    # Postfix's queue manager hands a destination's mail to its deliveries in turn:
    # 40 messages with two connections allowed go over two at once, not all over one.
    handler = _HoldsFirstUntilTwoConnections()
    with RecordingServer(handler=handler) as server:
        handler.count = server.connections
        box = Outbox(tmp_path)
        for i in range(40):
            box.add(_message(i), "a@example.org", [f"r{i}@example.net"])
        stats = Worker(box, port=server.port, connections=2, per_server=2, batch=50).run()
        assert stats.delivered == 40 and len(server.messages) == 40
        used = [w for w in server.wire if b"MAIL FROM" in w]
        assert len(used) == 2
        # The first connection claimed its share, 20, before it connected; the second
        # half of the rest, 10, at least; then each takes half of what is left.
        assert min(w.count(b"MAIL FROM") for w in used) >= 10


def test_each_recipient_ends_in_its_own_state(tmp_path: Path, smtpd: RecordingServer) -> None:
    smtpd.handler.refuse = {
        "later@example.net": ["450 4.2.1 mailbox busy"],  # 450 now, accepted on the retry
        "never@example.net": "550 5.1.1 no such user",
    }
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    queued = box.add(
        _message(1), "a@example.org", ["ok@example.net", "later@example.net", "never@example.net"]
    )
    Worker(box, port=smtpd.port).run()
    msg = box.load(queued.id)
    states = {r.address: r.state for r in msg.recipients}
    assert states == {
        "ok@example.net": State.DELIVERED,
        "later@example.net": State.DEFERRED,
        "never@example.net": State.FAILED,
    }
    assert msg.next_attempt > 0 and not msg.done
    # The retry sends only to the deferred recipient, with the same Message-ID.
    Worker(box, port=smtpd.port).run()
    msg = box.load(queued.id)
    later = msg.recipient("later@example.net")
    assert later is not None and later.state is State.DELIVERED and later.attempts == 2
    assert msg.done and msg.status == "failed"
    assert [m.rcpt_tos for m in smtpd.messages] == [["ok@example.net"], ["later@example.net"]]
    first, second = (m.content for m in smtpd.messages)
    assert (
        first.split(b"\r\n")[0]
        == second.split(b"\r\n")[0]
        == (f"Message-ID: {msg.message_id}".encode())
    )


def test_a_421_defers_and_backs_off_from_the_server(tmp_path: Path, smtpd: RecordingServer) -> None:
    smtpd.handler.refuse = {"busy@example.net": "421 4.7.0 too many messages, slow down"}
    box = Outbox(tmp_path)
    first = box.add(_message(1), "a@example.org", ["busy@example.net"])
    rest = [box.add(_message(i), "a@example.org", [f"r{i}@example.net"]) for i in range(5)]
    stats = Worker(box, port=smtpd.port, connections=1, batch=2, busy_backoff=600).run()
    assert stats.busy_signals == 1
    msg = box.load(first.id)
    assert msg.recipients[0].state is State.DEFERRED and msg.recipients[0].code == 421
    # Nothing more was sent to the busy server in this run: the others wait for the pause.
    later = [box.load(m.id) for m in rest]
    assert all(m.status == "deferred" for m in later[1:])
    assert all(m.next_attempt >= msg.recipients[0].updated + 600 for m in later[1:])  # type: ignore[operator]
    assert all(m.recipients[0].attempts == 0 for m in later[1:])  # deferred untried


def test_a_dead_server_defers_everything_without_failing(tmp_path: Path) -> None:
    from support.servers import free_port

    box = Outbox(tmp_path)
    ids = [box.add(_message(i), "a@example.org", ["b@example.net"]).id for i in range(3)]
    stats = Worker(box, port=free_port()).run()
    assert stats.deferred == 3 and stats.failed == 0
    for msg_id in ids:
        msg = box.load(msg_id)
        assert msg.status == "deferred" and msg.last_error and "ConnectError" in msg.last_error


def test_a_drop_after_the_final_dot_is_possibly_delivered_and_retried(tmp_path: Path) -> None:
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    queued = box.add(_message(1), "a@example.org", ["b@example.net"])
    with ScriptedServer(drop_after_dot(), then=[plain()]) as server:
        stats = Worker(box, port=server.port).run()
        assert stats.possibly_delivered == 1
        msg = box.load(queued.id)
        r = msg.recipients[0]
        assert r.state is State.DEFERRED and r.possibly_delivered
        assert msg.possible_duplicates == 1
        Worker(box, port=server.port).run()
        msg = box.load(queued.id)
        assert msg.done and msg.recipients[0].state is State.DELIVERED
        # It was sent twice, both times with the same Message-ID; the record says so.
        assert len(server.messages) == 2 and server.messages[0] == server.messages[1]
        assert msg.recipients[0].possibly_delivered and msg.possible_duplicates == 1


@pytest.mark.parametrize("drop", ["hang-up", "421"])
def test_the_message_after_a_drop_at_the_final_dot_goes_on_the_next_connection(
    tmp_path: Path, drop: str
) -> None:
    """A server without PIPELINING: the client takes the next message while the
    server reads the current one's data. The server hung up (or said 421) after
    the first final dot: the second message, never begun, was counted as an
    attempt that failed and deferred (past its lifetime, given up) instead of
    being handled as a message never handed over: sent on the next connection
    (after a 421, which asks to slow down: deferred as not tried)."""
    box = Outbox(tmp_path, schedule=RetrySchedule(first=600))
    first, second = (box.add(_message(n), "a@example.org", ["b@example.net"]) for n in (1, 2))
    events = Events()
    box.observer = events
    reply = None if drop == "hang-up" else b"421 4.3.2 shutting down\r\n"
    script = [*until_data(), read_data(reply=reply), close()]
    with ScriptedServer(script, then=[plain()]) as server:
        Worker(box, port=server.port, connections=1, per_server=1).run()
        assert box.load(first.id).status == "deferred"
        msg = box.load(second.id)
        if drop == "hang-up":
            assert msg.status == "delivered" and msg.attempts == 1, msg.last_error
            assert len(server.messages) == 2
            # Withdrawn untried, then its attempt on the next connection (Observer).
            assert [e[0] for e in events.seen if e[1] == second.id] == [
                "started",
                "started",
                "finished",
            ]
        else:
            assert msg.status == "deferred" and msg.attempts == 0
            assert msg.last_error is not None and "not tried" in msg.last_error
            assert len(server.messages) == 1
            # Withdrawn untried, then deferred untried with the rest (Observer).
            assert [e[0] for e in events.seen if e[1] == second.id] == ["started", "finished"]


def test_a_drop_in_the_middle_of_the_data_is_a_plain_deferral(tmp_path: Path) -> None:
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    # Big enough that the client is still writing when the server hangs up.
    body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 16000
    queued = box.add(body, "a@example.org", ["b@example.net"])
    with ScriptedServer(drop_mid_data(), then=[plain()]) as server:
        Worker(box, port=server.port).run()
        msg = box.load(queued.id)
        r = msg.recipients[0]
        assert r.state is State.DEFERRED and not r.possibly_delivered
        assert msg.possible_duplicates == 0 and server.messages == []
        Worker(box, port=server.port).run()
        assert box.load(queued.id).status == "delivered"
        assert len(server.messages) == 1


def test_per_server_limit_and_routes(tmp_path: Path, smtpd: RecordingServer) -> None:
    box = Outbox(tmp_path)
    with RecordingServer() as other:
        for i in range(30):
            box.add(_message(i), "a@example.org", [f"r{i}@example.net"])
            box.add(
                _message(i),
                "a@example.org",
                [f"o{i}@example.net"],
                server=f"127.0.0.1:{other.port}",
            )
        stats = Worker(box, port=smtpd.port, connections=4, per_server=1, batch=5).run()
        assert stats.delivered == 60
        # One connection to each server however many threads: each was reused for 30 messages.
        for server in (smtpd, other):
            assert len(server.messages) == 30
            assert len([w for w in server.wire if w]) == 1
        assert {m.rcpt_tos[0][0] for m in other.messages} == {"o"}


def test_rate_limiter_spaces_messages_evenly() -> None:
    from smtpmail.outbox.limits import RateLimiter

    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        assert limiter.acquire()
    assert slept == [0.25, 0.25, 0.25, 0.25]  # the first goes at once, then 4 per second
    now[0] += 10  # idle time is not saved up into a burst
    limiter.acquire()
    limiter.acquire()
    assert slept[-1] == 0.25 and len(slept) == 5


def test_recipients_over_the_servers_limit_are_delivered_in_one_attempt(
    tmp_path: Path, smtpd: RecordingServer
) -> None:
    # RFC 5321 §4.5.3.1.10: the queued file is sent again to the rest, same connection.
    smtpd.handler.rcpt_limit = 2
    box = Outbox(tmp_path)
    rcpts = [f"r{i}@example.net" for i in range(5)]
    queued = box.add(_message(1), "a@example.org", rcpts)
    stats = Worker(box, port=smtpd.port).run()
    assert (stats.delivered, stats.deferred, stats.failed) == (5, 0, 0)
    msg = box.load(queued.id)
    assert msg.done and msg.status == "delivered" and msg.attempts == 1
    assert [m.rcpt_tos for m in smtpd.messages] == [rcpts[0:2], rcpts[2:4], rcpts[4:]]
    assert len({m.content for m in smtpd.messages}) == 1


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        # RFC 5321 §4.5.3.1.10: a 552 to RCPT is the old "too many recipients": temporary.
        ("552 5.5.3 too many recipients", State.DEFERRED),
        ("452 4.2.2 mailbox full", State.DEFERRED),
        ("550 5.1.1 no such user", State.FAILED),
    ],
)
def test_a_recipient_refused_at_rcpt_is_deferred_or_failed_as_the_protocol_says(
    tmp_path: Path, smtpd: RecordingServer, reply: str, state: State
) -> None:
    box = Outbox(tmp_path, schedule=RetrySchedule(first=0))
    alone = box.add(_message(1), "a@example.org", ["c@example.net"])
    shared = box.add(_message(2), "a@example.org", ["b@example.net", "c@example.net"])
    smtpd.handler.refuse = {"c@example.net": [reply, reply]}  # then taken, on the retry
    Worker(box, port=smtpd.port).run()
    for queued in (alone, shared):
        c = box.load(queued.id).recipient("c@example.net")
        assert c is not None and c.state is state and c.code == int(reply[:3])
    assert [m.rcpt_tos for m in smtpd.messages] == [["b@example.net"]]
    Worker(box, port=smtpd.port).run()
    retried = [m.rcpt_tos for m in smtpd.messages[1:]]
    assert retried == ([["c@example.net"]] * 2 if state is State.DEFERRED else [])
