"""The session recorder: the dialogue whatever the packet boundaries, credentials hidden."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpmail.cli._recorder import Recorder
from smtpmail.cli.inbox.testing import running_sink
from support.inboxes import send_raw

#: (who, octets): the client's octets as sent, the server's reply lines.
SCRIPT: list[tuple[str, bytes]] = [
    ("S", b"220 sink ready"),
    ("C", b"EHLO client.example\r\n"),
    ("S", b"250-sink"),
    ("S", b"250 AUTH PLAIN LOGIN"),
    ("C", b"AUTH LOGIN\r\n"),
    ("S", b"334 VXNlcm5hbWU6"),
    ("C", b"YW5u\r\n"),
    ("S", b"334 UGFzc3dvcmQ6"),
    ("C", b"czNjcmV0\r\n"),
    ("S", b"235 2.7.0 Authentication successful"),
    ("C", b"MAIL FROM:<a@example.org>\r\n"),
    ("S", b"250 OK"),
    ("C", b"RCPT TO:<b@example.org>\r\n"),
    ("S", b"250 OK"),
    ("C", b"DATA\r\n"),
    ("S", b"354 go ahead"),
    ("C", b"Subject: x\r\n\r\n..dot\r\nbare\nlf\r\n.\r\n"),
    ("S", b"250 accepted"),
    ("C", b"AUTH PLAIN AGFubgBzM2NyZXQ=\r\n"),
    ("S", b"503 already authenticated"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 bye"),
]

EXPECTED = [
    "S: 220 sink ready",
    "C: EHLO client.example",
    "S: 250-sink",
    "S: 250 AUTH PLAIN LOGIN",
    "C: AUTH LOGIN",
    "S: 334 VXNlcm5hbWU6",
    "C: [credentials hidden]",
    "S: 334 UGFzc3dvcmQ6",
    "C: [credentials hidden]",
    "S: 235 2.7.0 Authentication successful",
    "C: MAIL FROM:<a@example.org>",
    "S: 250 OK",
    "C: RCPT TO:<b@example.org>",
    "S: 250 OK",
    "C: DATA",
    "S: 354 go ahead",
    "C: [message content: 30 octets]",
    "C: .",
    "S: 250 accepted",
    "C: AUTH PLAIN [credentials hidden]",
    "S: 503 already authenticated",
    "C: QUIT",
    "S: 221 bye",
]


def play(cuts: list[int]) -> Recorder:
    recorder = Recorder(keep_dialogue=True)
    for who, octets in SCRIPT:
        if who == "S":
            recorder.sent(octets)
            continue
        at = 0
        for cut in sorted({c % (len(octets) + 1) for c in cuts}):
            recorder.received(octets[at:cut])
            at = cut
        recorder.received(octets[at:])
    return recorder


@given(st.lists(st.integers(min_value=0, max_value=64), max_size=6))
def test_the_dialogue_does_not_depend_on_packet_boundaries(cuts: list[int]) -> None:
    recorder = play(cuts)
    assert [line for _, line in recorder.dialogue] == EXPECTED
    assert recorder.pipelined is False  # each command waited for its reply
    assert recorder.auth_mechanism == "PLAIN"  # the last AUTH command seen


def test_commands_sent_before_the_replies_are_pipelining() -> None:
    """RFC 2920 §3.1: MAIL, RCPT and DATA in one go after EHLO."""
    recorder = Recorder(keep_dialogue=False)
    recorder.sent(b"220 ready")
    recorder.received(b"EHLO c\r\n")
    recorder.sent(b"250 PIPELINING")
    recorder.received(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    assert recorder.pipelined is True
    assert recorder.dialogue == []  # not kept without --record-session


def test_a_huge_line_is_cut_in_the_dialogue() -> None:
    recorder = Recorder(keep_dialogue=True)
    recorder.received(b"NOOP " + b"x" * 5000 + b"\r\n")
    ((_, line),) = recorder.dialogue
    assert line.endswith(" [... 5005 characters]")
    assert len(line) < 1100


def test_an_endless_line_is_counted_not_held() -> None:
    """A client that never sends LF (in DATA aiosmtpd reads on) costs bounded memory."""
    recorder = Recorder(keep_dialogue=True)
    recorder.sent(b"354 go ahead")
    for _ in range(100):
        recorder.received(b".x" * 50_000)
        assert len(recorder._pending) <= 8192
    recorder.received(b"\r\n.\r\n")
    assert recorder.dialogue[-2][1] == "C: [message content: 10000002 octets]"
    assert recorder.dialogue[-1][1] == "C: ."


@pytest.mark.parametrize(
    "smuggled",
    [b"x\n.\nMAIL FROM:<evil@example.org>\nRCPT TO:<v@example.org>\nDATA\nhidden\n.\n",
     b"x\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nhidden\r\n",
     b"x\r.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nhidden\r\n"],
)  # fmt: skip
def test_a_smuggled_end_of_data_stays_message_content_in_the_dialogue(smuggled: bytes) -> None:
    """The server ends DATA at CRLF.CRLF only (RFC 5321 §4.1.1.4); so does the
    recorded dialogue: the commands a client hides behind ``\\n.\\n`` or
    ``\\n.\\r\\n`` are shown as what they are, octets of the one message."""
    content = b"Subject: smuggling\r\n\r\n" + smuggled + b"end\r\n"
    with running_sink() as inbox:
        send_raw(inbox, content)
        (m,) = inbox.messages()
        assert inbox.raw(m["id"]) == content
        session = inbox.message(m["id"])["session"]
    lines = [d["line"] for d in session["dialogue"]]
    assert lines[-2:] == [f"C: [message content: {len(content)} octets]", "C: ."]
    assert lines.count("C: DATA") == 1
    assert [line for line in lines if "evil" in line] == []
    assert session["extensions_used"] == []  # no pipelining where there was none
