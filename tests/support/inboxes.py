"""Messages and helpers shared by the web inbox's tests."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from smtpmail import Client
from smtpmail.cli.inbox.testing import Inbox

#: The attachment every sample carries: all 256 octet values, to compare downloads.
ATTACHMENT = bytes(range(256)) * 40


def sample_message(subject: str = "Quarterly report", to: str = "bob@example.org") -> EmailMessage:
    """HTML with a text alternative, an inline cid: image, an attachment."""
    msg = EmailMessage()
    msg["From"] = "Alice Ängström <alice@example.org>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Hello Bob,\nthe report is attached.\n")
    msg.add_alternative(
        '<p>Hello <b>Bob</b>,</p><p>the report is attached.</p><img src="cid:logo@example.org">',
        subtype="html",
    )
    msg.get_payload()[1].add_related(
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image", "gif", cid="<logo@example.org>"
    )
    msg.add_attachment(
        ATTACHMENT, maintype="application", subtype="octet-stream", filename="report.bin"
    )
    return msg


def send(inbox: Inbox, msg: EmailMessage | bytes, sender: str = "alice@example.org",
         recipients: tuple[str, ...] = ("bob@example.org",)) -> None:  # fmt: skip
    """Through smtpmail's own client, to the inbox's SMTP port."""
    with Client("127.0.0.1", inbox.smtp_port, timeout=30) as client:
        client.send(msg, sender, list(recipients))


def http(
    url: str,
    method: str = "GET",
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, errors included (no raising)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def nested_message(depth: int = 1200) -> bytes:
    """Multiparts nested deeper than the email package's parser recurses (a MIME
    bomb of 80 kB): the inbox must still list and show it."""
    body = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    body += b"Content-Type: text/plain\r\n\r\nthe leaf\r\n"
    body += b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return b"From: a@example.org\r\nSubject: nested deep\r\nMIME-Version: 1.0\r\n" + body


def send_raw(inbox: Inbox, content: bytes, *, ehlo: bytes = b"c.example") -> None:
    """One message over a bare socket, its octets exactly as given (a client's
    mistakes, a smuggling attempt) and the terminating ``.`` line after them."""
    with socket.create_connection(("127.0.0.1", inbox.smtp_port), timeout=30) as s:
        f = s.makefile("rb")
        for command in (b"", b"EHLO " + ehlo, b"MAIL FROM:<a@example.org>",
                        b"RCPT TO:<b@example.org>", b"DATA"):  # fmt: skip
            if command:
                s.sendall(command + b"\r\n")
            while (line := f.readline())[3:4] == b"-":
                pass
            assert line[:1] in (b"2", b"3"), line
        s.sendall(content + b".\r\n")
        assert f.readline().startswith(b"250")
        s.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"221")
