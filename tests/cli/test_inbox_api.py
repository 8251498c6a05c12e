"""The web inbox's JSON API, against a real sink (aiosmtpd + aiohttp) and smtpmail's client."""

from __future__ import annotations

import json
import mailbox
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpmail import Client
from smtpmail.cli import _capture
from smtpmail.cli.inbox.store import Store
from smtpmail.cli.inbox.testing import Inbox, running_sink
from smtpmail.transport.tls import TLSMode
from support.inboxes import ATTACHMENT, http, nested_message, sample_message, send


@pytest.fixture(scope="module")
def sink() -> Iterator[Inbox]:
    with running_sink() as inbox:
        yield inbox


@pytest.fixture
def inbox(sink: Inbox) -> Inbox:
    sink.clear()
    return sink


def test_a_message_is_listed_with_decoded_fields(inbox: Inbox) -> None:
    send(inbox, sample_message())
    (m,) = inbox.messages()
    assert m["from"] == "Alice Ängström <alice@example.org>"  # RFC 2047 decoded
    assert m["to"] == ["bob@example.org"]
    assert m["subject"] == "Quarterly report"
    assert m["attachments"] == 1
    assert m["read"] is False
    assert m["envelope"] == {"mail_from": "alice@example.org", "rcpt_tos": ["bob@example.org"]}
    assert m["lint"] == {"errors": 0, "warnings": 0}
    assert m["size"] == len(inbox.raw(m["id"]))


def test_one_message_has_headers_text_mime_tree_attachments_and_session(inbox: Inbox) -> None:
    send(inbox, sample_message())
    (summary,) = inbox.messages()
    m = inbox.message(summary["id"])
    assert ("Subject", "Quarterly report") in [(h["name"], h["value"]) for h in m["headers"]]
    assert m["text"].replace("\r\n", "\n") == "Hello Bob,\nthe report is attached.\n"
    assert m["has_html"] is True
    tree = m["mime"]
    assert tree["content_type"] == "multipart/mixed"
    assert [p["content_type"] for p in tree["parts"]] == [
        "multipart/alternative",
        "application/octet-stream",
    ]
    (attachment,) = m["attachments_list"]
    assert attachment["filename"] == "report.bin"
    assert attachment["size"] == len(ATTACHMENT)
    assert inbox.part(m["id"], attachment["part"]) == ATTACHMENT
    session = m["session"]
    assert session["ehlo_name"] and session["greeting"] == "EHLO"
    assert "8BITMIME" not in session["extensions_used"]  # all ASCII: sent as 7bit
    assert any(p.startswith("SIZE=") for p in session["mail_parameters"])
    assert session["tls"] is None
    assert session["dialogue"][0]["line"].startswith("S: 220 ")
    assert "C: DATA" in [d["line"] for d in session["dialogue"]]
    assert m["lint_findings"] == []


def test_raw_is_the_message_as_received(inbox: Inbox) -> None:
    content = b"From: a@example.org\r\nSubject: raw\r\n\r\nline one\r\n.dot line\r\n"
    send(inbox, content)
    (m,) = inbox.messages()
    assert inbox.raw(m["id"]) == content


def test_search_covers_from_to_subject_and_body(inbox: Inbox) -> None:
    send(inbox, sample_message("Invoice 42", to="carol@example.org"))
    send(inbox, b"From: dave@example.net\r\nSubject: hello\r\n\r\nthe zebra is here\r\n")
    assert [m["subject"] for m in inbox.messages("invoice")] == ["Invoice 42"]
    assert [m["subject"] for m in inbox.messages("carol")] == ["Invoice 42"]
    assert [m["subject"] for m in inbox.messages("dave@example.net")] == ["hello"]
    assert [m["subject"] for m in inbox.messages("ZEBRA")] == ["hello"]
    assert inbox.messages("zebra invoice") == []
    assert len(inbox.messages()) == 2


def test_delete_one_and_all(inbox: Inbox) -> None:
    for n in range(3):
        send(inbox, f"From: a@example.org\r\nSubject: m{n}\r\n\r\nx\r\n".encode())
    first, *rest = inbox.messages()
    inbox.delete(first["id"])
    assert [m["id"] for m in inbox.messages()] == [m["id"] for m in rest]
    status, _, body = http(f"{inbox.url}api/v1/messages/{first['id']}")
    assert status == 404
    assert json.loads(body) == {"error": "no such message"}
    inbox.clear()
    assert inbox.messages() == []


def test_wait_returns_a_message_already_there_or_one_that_arrives(inbox: Inbox) -> None:
    send(inbox, sample_message("first"))
    assert inbox.wait_for(subject="FIRST", timeout=5)["subject"] == "first"
    # new=True: only one that arrives after the request; sent once it is waiting.
    got: list[object] = []
    waiter = threading.Thread(
        target=lambda: got.append(inbox.wait_for(to="erin@", new=True, timeout=60))
    )
    waiter.start()
    sink_sees_the_wait(inbox)
    send(inbox, sample_message("second", to="erin@example.org"))
    waiter.join(timeout=90)
    assert isinstance(got[0], dict) and got[0]["subject"] == "second"


def sink_sees_the_wait(inbox: Inbox) -> None:
    """Bounded poll: the long-poll request has reached the server (the message
    sent next is then new to it)."""
    import time

    end = time.monotonic() + 30
    while not _waiting(inbox):
        assert time.monotonic() < end, "the long-poll never reached the server"
        time.sleep(0.02)


def _waiting(inbox: Inbox) -> bool:
    return bool(json.loads(http(inbox.url + "api/v1/info")[2])["waiting"])


def test_wait_times_out_with_408(inbox: Inbox) -> None:
    status, _, body = http(f"{inbox.url}api/v1/wait?subject=never&timeout=0.2")
    assert status == 408
    assert "no matching message" in json.loads(body)["error"]
    with pytest.raises(TimeoutError):
        inbox.wait_for(subject="never", timeout=0.2)


def test_a_wait_goes_on_after_the_messages_the_last_one_saw(inbox: Inbox) -> None:
    """A 408 says ``newest``; ``after=newest`` finds what arrived since, even
    between two requests; ``new`` still ignores what was there."""
    send(inbox, sample_message("old"))
    status, _, body = http(f"{inbox.url}api/v1/wait?subject=late&timeout=0")
    assert status == 408
    newest = json.loads(body)["newest"]
    send(inbox, sample_message("late"))  # (between the two requests)
    status, _, body = http(f"{inbox.url}api/v1/wait?subject=late&timeout=0&after={newest}")
    assert status == 200 and json.loads(body)["subject"] == "late"
    status, _, _ = http(f"{inbox.url}api/v1/wait?subject=old&timeout=0&after={newest}")
    assert status == 408  # (taken before: not after the newest-th)
    status, _, body = http(f"{inbox.url}api/v1/wait?timeout=0&after=-1")
    assert status == 400


def test_a_wait_longer_than_the_inboxs_longest_goes_on(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inbox.wait_for(timeout=T) waits T even past the inbox's limit per request
    (5 minutes; 0.3 s here): it asks again. Before, it raised TimeoutError at
    the limit, saying it had waited T."""
    from smtpmail.cli.inbox import api

    monkeypatch.setattr(api, "MAX_WAIT", 0.3)
    send(inbox, sample_message("there", to="erin@example.org"))
    got: list[object] = []
    waiter = threading.Thread(
        target=lambda: got.append(inbox.wait_for(to="erin@", new=True, timeout=60))
    )
    waiter.start()
    sink_sees_the_wait(inbox)
    time.sleep(1)  # (the limit passes three times: on a slow machine fewer, never wrongly)
    send(inbox, sample_message("arrived", to="erin@example.org"))
    waiter.join(timeout=90)
    assert isinstance(got[0], dict) and got[0]["subject"] == "arrived"


def test_events_stream_announces_new_messages(inbox: Inbox) -> None:
    with urllib.request.urlopen(inbox.url + "api/v1/events", timeout=60) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline() == b"retry: 1000\n"
        send(inbox, sample_message("live"))
        lines = [stream.readline() for _ in range(3)]
    assert lines[0] == b"\n"
    assert lines[1] == b"event: new\n"
    assert json.loads(lines[2].removeprefix(b"data: "))["subject"] == "live"


def test_changes_need_the_token_from_the_same_origin(inbox: Inbox) -> None:
    send(inbox, sample_message())
    (m,) = inbox.messages()
    url = f"{inbox.url}api/v1/messages/{m['id']}"
    token = inbox.info()["token"]
    assert http(url, "DELETE")[0] == 403
    assert http(url, "DELETE", headers={"X-Inbox-Token": "wrong"})[0] == 403
    foreign = {"X-Inbox-Token": token, "Origin": "http://evil.example"}
    assert http(url, "DELETE", headers=foreign)[0] == 403
    cross_site = {"X-Inbox-Token": token, "Sec-Fetch-Site": "cross-site"}
    assert http(url, "DELETE", headers=cross_site)[0] == 403
    assert len(inbox.messages()) == 1
    own = {"X-Inbox-Token": token, "Origin": inbox.url.rstrip("/")}
    assert http(url, "DELETE", headers=own)[0] == 200
    assert inbox.messages() == []


def test_only_loopback_host_names_are_answered(inbox: Inbox) -> None:
    """DNS rebinding: a page of evil.example whose name now points to 127.0.0.1."""
    status, _, body = http(inbox.url + "api/v1/messages", headers={"Host": "evil.example"})
    assert status == 403
    assert b"loopback" in body
    assert http(inbox.url + "api/v1/messages", headers={"Host": "localhost:1"})[0] == 200


def test_pages_and_bodies_carry_their_security_headers(inbox: Inbox) -> None:
    send(inbox, sample_message())
    (m,) = inbox.messages()
    status, headers, _ = http(inbox.url)
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    status, headers, body = http(f"{inbox.url}messages/{m['id']}/html")
    csp = headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "script-src" not in csp and "default-src 'none'" in csp
    assert "img-src data:;" in csp  # no remote images until asked
    assert b'src="data:image/gif;base64,' in body  # the cid: image, inlined
    _, headers, _ = http(f"{inbox.url}messages/{m['id']}/html?remote=1")
    assert "img-src data: https: http:;" in headers["Content-Security-Policy"]
    part = inbox.message(m["id"])["attachments_list"][0]["part"]
    _, headers, _ = http(f"{inbox.url}api/v1/messages/{m['id']}/parts/{part}")
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''report.bin"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_message_page_marks_it_read(inbox: Inbox) -> None:
    send(inbox, sample_message())
    (m,) = inbox.messages()
    status, _, page = http(f"{inbox.url}messages/{m['id']}")
    assert status == 200
    assert b"Quarterly report" in page
    assert inbox.messages()[0]["read"] is True


def test_unknown_message_part_and_bad_parameters(inbox: Inbox) -> None:
    send(inbox, sample_message())
    (m,) = inbox.messages()
    assert http(f"{inbox.url}api/v1/messages/{m['id']}/parts/99")[0] == 404
    assert http(f"{inbox.url}api/v1/messages/{m['id']}/parts/x")[0] == 404
    assert http(f"{inbox.url}api/v1/messages?limit=x")[0] == 400
    assert http(f"{inbox.url}api/v1/wait?timeout=soon")[0] == 400
    assert http(f"{inbox.url}messages/nope")[0] == 404


@pytest.mark.parametrize(
    ("query", "says"),
    [("messages?limit=-1", "limit must be a number, 0 or more"),
     ("wait?subject=never&timeout=nan", "timeout must be a number of seconds, 0 or more"),
     ("wait?subject=never&timeout=-5", "timeout must be a number of seconds, 0 or more")],
)  # fmt: skip
def test_a_negative_or_nan_limit_or_timeout_is_a_400(inbox: Inbox, query: str, says: str) -> None:
    """Not a list short of its last message (limit -1), nor a long-poll that never
    ends (timeout NaN, which no wait ever reaches)."""
    send(inbox, sample_message())
    status, _, body = http(f"{inbox.url}api/v1/{query}")
    assert (status, json.loads(body)) == (400, {"error": says})
    assert inbox.info()["waiting"] == 0


def test_release_is_off_unless_configured(inbox: Inbox) -> None:
    send(inbox, sample_message())
    (m,) = inbox.messages()
    token = inbox.info()["token"]
    status, _, body = http(
        f"{inbox.url}api/v1/messages/{m['id']}/release",
        "POST",
        headers={"X-Inbox-Token": token, "Content-Type": "application/json"},
        body={"to": ["x@example.org"]},
    )
    assert status == 409
    assert "--release-server" in json.loads(body)["error"]


def test_pipelining_and_8bitmime_show_in_the_session(inbox: Inbox) -> None:
    """RFC 2920: MAIL, RCPT and DATA sent together before any reply."""
    with socket.create_connection(("127.0.0.1", inbox.smtp_port), timeout=30) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO pipeliner.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        s.sendall("From: a@example.org\r\nSubject: é\r\n\r\nbody é\r\n.\r\n".encode())
        assert f.readline().startswith(b"250")
        s.sendall(b"QUIT\r\n")
    (m,) = inbox.messages()
    session = inbox.message(m["id"])["session"]
    assert session["ehlo_name"] == "pipeliner.example"
    assert session["extensions_used"] == ["PIPELINING", "8BITMIME"]
    assert session["mail_parameters"] == ["BODY=8BITMIME"]


def test_the_store_keeps_a_cap_and_drops_the_oldest() -> None:
    store = Store(cap=2)
    for n in (1, 2, 3):
        store.add(_capture.Captured(n, "peer", "a@example.org", ("b@example.org",), b"x"))
    assert [s.id for s in store] == ["3", "2"]


def test_a_maildir_store_keeps_messages_and_read_state_across_restarts(tmp_path: Path) -> None:
    box = _capture.open_maildir(tmp_path / "Maildir")
    store = Store(box=box)
    content = b"From: a@example.org\r\nSubject: kept\r\n\r\nbody\r\n"
    kept = store.add(_capture.Captured(1, "peer", "a@example.org", ("b@example.org",), content))
    store.add(_capture.Captured(2, "peer", "a@example.org", ("c@example.org",), content))
    store.mark_read(kept.id)
    again = Store(box=_capture.open_maildir(tmp_path / "Maildir"))
    assert len(again) == 2
    first = again.get(kept.id)
    assert first is not None
    assert first.read is True
    assert first.captured.content == content
    assert (first.captured.mail_from, first.captured.rcpt_tos) == (
        "a@example.org",
        ("b@example.org",),
    )
    again.delete(kept.id)
    assert len(mailbox.Maildir(tmp_path / "Maildir")) == 1


def test_a_saved_message_keeps_its_own_trace_fields_across_restarts(tmp_path: Path) -> None:
    """A message saved from a mailbox and sent again starts with its own
    Return-Path and X-Original-To: after a restart they are still the message's,
    not taken for the envelope the sink wrote above them."""
    content = (b"Return-Path: <bounces@lists.example.org>\r\n"
               b"X-Original-To: me@example.net\r\nDelivered-To: me@example.net\r\n"
               b"From: list@lists.example.org\r\nSubject: saved\r\n\r\nbody\r\n")  # fmt: skip
    store = Store(box=_capture.open_maildir(tmp_path / "Maildir"))
    kept = store.add(_capture.Captured(1, "peer", "dev@example.org", ("qa@example.org",), content))
    again = Store(box=_capture.open_maildir(tmp_path / "Maildir")).get(kept.id)
    assert again is not None
    assert (again.captured.mail_from, again.captured.rcpt_tos) == (
        "dev@example.org",
        ("qa@example.org",),
    )
    assert again.captured.content == content


def test_a_message_nested_too_deep_to_parse_leaves_the_inbox_working(
    inbox: Inbox, tmp_path: Path
) -> None:
    """One hostile message must not take the list down: read as its header
    alone, it is listed, shown and linted; a Maildir holding it still loads."""
    send(inbox, nested_message(1200))  # deeper than the email package's parser reaches
    send(inbox, nested_message(500))  # parsed, but deeper than a view walking it recurses
    send(inbox, sample_message())
    subjects = [m["subject"] for m in inbox.messages()]
    assert subjects == ["Quarterly report", "nested deep", "nested deep"]
    assert http(inbox.url)[0] == 200
    for deep, depth in zip(inbox.messages("nested"), (500, 1200), strict=True):
        assert http(f"{inbox.url}messages/{deep['id']}")[0] == 200
        assert inbox.message(deep["id"])["mime"]["content_type"] == "multipart/mixed"
        assert inbox.raw(deep["id"]) == nested_message(depth)
    store = Store(box=_capture.open_maildir(tmp_path / "Maildir"))
    store.add(_capture.Captured(1, "peer", "a@example.org", ("b@example.org",), nested_message()))
    (loaded,) = Store(box=_capture.open_maildir(tmp_path / "Maildir"))
    assert loaded.captured.content == nested_message()


def test_auth_shows_mechanism_and_user_never_the_password() -> None:
    with running_sink(auth_accept_any=True) as inbox:
        with Client(
            "127.0.0.1", inbox.smtp_port, auth=("ann", "s3cret-pw"), allow_plaintext_auth=True,
            tls=TLSMode.PLAINTEXT_INSECURE, timeout=30,
        ) as client:  # fmt: skip
            client.send(sample_message(), "alice@example.org", ["bob@example.org"])
        (m,) = inbox.messages()
        detail = inbox.message(m["id"])
        session = detail["session"]
        assert session["auth"]["user"] == "ann"
        assert session["auth"]["mechanism"] == "CRAM-MD5"  # the strongest offered
        assert "s3cret" not in json.dumps(detail)
        import base64

        assert base64.b64encode(b"\0ann\0s3cret-pw").decode() not in json.dumps(detail)
        assert any("[credentials hidden]" in d["line"] for d in session["dialogue"])


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_accept_any_takes_each_mechanism_a_client_may_be_set_to(mechanism: str) -> None:
    """As Mailpit's: an application configured for CRAM-MD5 can try the sink too."""
    with running_sink(auth_accept_any=True) as inbox:
        with Client(
            "127.0.0.1", inbox.smtp_port, auth=("ann", "any-pw"), auth_mechanism=mechanism,
            allow_plaintext_auth=True, tls=TLSMode.PLAINTEXT_INSECURE, timeout=30,
        ) as client:  # fmt: skip
            assert set(client.extensions["AUTH"].split()) == {"CRAM-MD5", "LOGIN", "PLAIN"}
            client.send(sample_message(), "alice@example.org", ["bob@example.org"])
        (m,) = inbox.messages()
        session = inbox.message(m["id"])["session"]
    assert session["auth"] == {"mechanism": mechanism, "user": "ann"}
    assert "any-pw" not in json.dumps(session)


def test_info_and_marking_read_through_the_api(inbox: Inbox) -> None:
    send(inbox, sample_message())
    info = inbox.info()
    assert info["smtp"] == f"127.0.0.1 port {inbox.smtp_port}"
    assert info["messages"] == 1
    assert info["release"] is None
    assert len(info["token"]) >= 32
    (m,) = inbox.messages()
    url = f"{inbox.url}api/v1/messages/{m['id']}/read"
    assert http(url, "POST")[0] == 403  # no token
    status, _, body = http(url, "POST", headers={"X-Inbox-Token": info["token"]})
    assert (status, json.loads(body)) == (200, {"read": m["id"]})
    assert inbox.messages()[0]["read"] is True


def test_stopping_the_inbox_answers_a_waiting_long_poll() -> None:
    """A test suite's long-poll gets a clear 503, not a dropped connection."""
    answers: list[tuple[int, bytes]] = []
    with running_sink() as inbox:
        url = f"{inbox.url}api/v1/wait?subject=never&timeout=300"
        poll = threading.Thread(target=lambda: answers.append(http(url)[::2]))  # type: ignore[arg-type]
        poll.start()
        sink_sees_the_wait(inbox)
    poll.join(timeout=60)
    assert answers == [(503, b'{"error": "the inbox is shutting down"}')]
