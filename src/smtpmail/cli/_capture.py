"""The capture server behind ``smtpmail demo`` and ``smtpmail sink``.

An aiosmtpd server (the receiving side of RFC 5321) whose handler hands each
accepted message to a callback, plus what both commands need around it: a
readable rendering of a message (envelope, headers, body) and storage in a
Maildir folder. aiosmtpd is imported here only, so the rest of the CLI runs
without it; it comes with the ``server`` extra.
"""

from __future__ import annotations

import asyncio
import email
import email.errors
import email.policy
import mailbox
import os
import re
import secrets
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import Policy
from pathlib import Path
from typing import TYPE_CHECKING, Any, AnyStr

from smtpmail import __version__
from smtpmail._log import Logger
from smtpmail._record import Frozen
from smtpmail.cli._recorder import Recorder, SessionInfo

if TYPE_CHECKING:
    import logging

__all__ = [
    "HEADER_ERRORS",
    "INSTALL_HINT",
    "MAX_MIME_DEPTH",
    "BackgroundServer",
    "CaptureServer",
    "Captured",
    "CaptureHandler",
    "CaptureMaildir",
    "decoded_header",
    "for_terminal",
    "open_maildir",
    "parse_message",
    "render",
    "start_server",
]

log = Logger("smtpmail.cli")  # logging itself is imported when needed (_log)

INSTALL_HINT = "this command needs aiosmtpd: pip install 'smtpmail[server]'"

#: Longest body shown; the rest is counted, not printed (the Maildir keeps it whole).
MAX_BODY_LINES = 200


class Captured(Frozen):
    """One message as the server accepted it."""

    number: int
    peer: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    #: The TLS version and cipher when the client used STARTTLS, else None.
    tls: str | None = None
    #: When the end of data arrived (Unix time).
    received_at: float = 0.0
    #: The session it came in (EHLO, extensions, AUTH, parameters, timing).
    session: SessionInfo | None = None


class CaptureHandler:
    """aiosmtpd handler: numbers each message and passes it to ``on_message``.

    If ``on_message`` fails (a full disk under the Maildir), the client gets a
    transient 451 rather than a 250 for a message that was not kept, and
    ``on_error`` hears why (by default it is logged).
    """

    def __init__(
        self,
        on_message: Callable[[Captured], object],
        on_error: Callable[[Captured, Exception], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_error = on_error or _log_error
        self.count = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """The EHLO reply, offering AUTH only where logins are accepted: aiosmtpd
        offers it after STARTTLS even with no authenticator, then refuses every
        login (535), which fails a client that logs in whenever AUTH is offered."""
        session.host_name = hostname  # aiosmtpd leaves this to the hook, when there is one
        if getattr(server, "offers_auth", True):
            return responses
        return [line for line in responses if not line[4:].upper().startswith("AUTH")]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        where = _where(session.peer)
        content = envelope.original_content or envelope.content or b""
        recorder = getattr(server, "recorder", None)
        captured = Captured(
            number=self.count,
            peer=where,
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=bytes(content),
            tls=_tls_summary(session),
            received_at=time.time(),
            session=_session_info(session, envelope, recorder) if recorder else None,
        )
        if recorder is not None:
            recorder.transaction_done()
        try:
            self.on_message(captured)
        except Exception as exc:
            self.on_error(captured, exc)
            return "451 4.3.0 the message could not be stored"
        return f"250 2.0.0 OK: message {captured.number} accepted"


def _where(peer: Any) -> str:
    """A client's address as the sink shows it: "127.0.0.1 port 50000"."""
    return f"{peer[0]} port {peer[1]}" if isinstance(peer, tuple) else str(peer)


def _not_login_data_notice(record: logging.LogRecord) -> bool:
    """aiosmtpd 1.4 logs, at WARNING, that its own ``Session.login_data`` is
    deprecated each time it sets it after a login: nothing the user can act on."""
    return not str(record.msg).startswith("Session.login_data is deprecated")


def _tls_summary(session: Any) -> str | None:
    """ "TLSv1.3 TLS_AES_256_GCM_SHA384" after STARTTLS (aiosmtpd keeps the TLS
    layer's details in ``session.ssl``), None on a clear-text session."""
    extra = getattr(session, "ssl", None)
    if not extra:
        return None
    ssl_object = extra.get("ssl_object")
    cipher = ssl_object.cipher() if ssl_object is not None else extra.get("cipher")
    version = ssl_object.version() if ssl_object is not None else None
    return " ".join(str(x) for x in (version, cipher[0] if cipher else None) if x) or "TLS"


def _session_info(session: Any, envelope: Any, recorder: Recorder) -> SessionInfo:
    mail_options = tuple(envelope.mail_options)
    rcpt_options = tuple(envelope.rcpt_options)
    used = []
    if recorder.pipelined:
        used.append("PIPELINING")
    for option, extension in (
        ("BODY=8BITMIME", "8BITMIME"),
        ("BODY=BINARYMIME", "BINARYMIME"),
        ("SMTPUTF8", "SMTPUTF8"),
        ("SIZE=", "SIZE"),
        ("RET=", "DSN"),
        ("ENVID=", "DSN"),
    ):
        if any(o.upper().startswith(option) for o in mail_options) and extension not in used:
            used.append(extension)
    if any(o.upper().startswith("NOTIFY=") for o in rcpt_options) and "DSN" not in used:
        used.append("DSN")
    auth_data = getattr(session, "auth_data", None)
    user = getattr(auth_data, "login", None)
    authenticated = bool(getattr(session, "authenticated", False))
    return SessionInfo(
        ehlo_name=session.host_name,
        esmtp=bool(session.extended_smtp),
        mail_options=mail_options,
        rcpt_options=rcpt_options,
        extensions=tuple(used),
        auth_mechanism=recorder.auth_mechanism if authenticated else None,
        auth_user=(user.decode("utf-8", "replace") if isinstance(user, bytes) else user)
        if authenticated
        else None,
        connected_at=recorder.connected_at,
        mail_at=recorder.mail_at,
        data_end_at=time.time(),
        dialogue=tuple(recorder.dialogue) if recorder.keep_dialogue else None,
    )


def _log_error(msg: Captured, exc: Exception) -> None:
    log.error("could not handle message %d: %s", msg.number, exc, exc_info=exc)


class CaptureServer:
    """A listening capture server; :meth:`close` says 421 to clients still connected."""

    def __init__(self, server: asyncio.Server, sessions: weakref.WeakSet[Any]) -> None:
        self.server = server
        self.sessions = sessions

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose when asked for port 0)."""
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, then tell each connected client the service is closing
        (RFC 5321 §3.8: a 421 reply, then the connection closes)."""
        self.server.close()
        await self.server.wait_closed()
        for session in list(self.sessions):
            transport = getattr(session, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.write(b"421 4.3.2 the capture server is shutting down\r\n")
                transport.close()
        await asyncio.sleep(0)  # let the transports flush and close


async def start_server(
    handler: CaptureHandler,
    host: str,
    port: int,
    *,
    ident: str,
    tls_context: ssl.SSLContext | None = None,
    require_tls: bool = False,
    record_session: bool = False,
    auth_accept_any: bool = False,
) -> CaptureServer:
    """Listen on ``host:port`` (0 picks a free port); raises OSError if it cannot.

    With ``tls_context`` it offers STARTTLS (RFC 3207); ``require_tls`` then
    refuses mail (530) until the client has started TLS. ``record_session``
    keeps each connection's dialogue with its messages; ``auth_accept_any``
    offers AUTH (RFC 4954) and accepts any credentials, to try clients that log in.
    """
    import logging

    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException

    aiosmtpd_log = logging.getLogger("mail.log")
    if _not_login_data_notice not in aiosmtpd_log.filters:
        aiosmtpd_log.addFilter(_not_login_data_notice)

    class RecordingSMTP(SMTP):
        """aiosmtpd's server with a :class:`Recorder` watching the connection."""

        recorder = Recorder(keep_dialogue=record_session)
        offers_auth = auth_accept_any  # read by CaptureHandler.handle_EHLO

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if self.transport is None:  # not the STARTTLS upgrade: a new connection
                self.recorder = Recorder(keep_dialogue=record_session)
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            self.recorder.received(data)
            super().data_received(data)

        async def auth_CRAM__MD5(self, _: Any, args: list[str]) -> AuthResult:
            """CRAM-MD5 (RFC 2195) for --auth-accept-any, as PLAIN and LOGIN: the
            answer names the user; its digest is not checked (any password goes)."""
            challenge = f"<{secrets.token_hex(8)}.{int(time.time())}@{self.hostname}>"
            answer = await self.challenge_auth(challenge)
            if not isinstance(answer, bytes):  # "*" or bad base64: aiosmtpd said 501
                return AuthResult(success=False, handled=True)
            user, _, digest = answer.rpartition(b" ")
            if not user or len(digest) != 32:
                await self.push("501 5.5.2 a CRAM-MD5 answer is: user, space, 32 hex digits")
                return AuthResult(success=False, handled=True)
            return AuthResult(success=True, auth_data=LoginPassword(user, b""))

        async def handle_exception(self, error: Exception) -> str:
            """One line through the CLI's warning channel instead of aiosmtpd's
            logged traceback: a client that gave up on TLS (it does not trust
            the certificate) is news about the client, not a crash of the sink."""
            where = _where(self.session.peer if self.session else None)
            if isinstance(error, TLSSetupException):
                log.warning("client %s: TLS handshake failed: %s", where, error.__cause__ or error)
            else:
                log.error("client %s: %s: %s", where, type(error).__name__, error)
            return f"500 Error: ({type(error).__name__}) {error}"

        async def push(self, status: AnyStr) -> None:
            line = status if isinstance(status, bytes) else status.encode("utf-8", "replace")
            self.recorder.sent(line)
            await super().push(status)

    def accept_any(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        return AuthResult(success=True, auth_data=data)

    loop = asyncio.get_running_loop()
    # gethostname() needs no DNS, unlike aiosmtpd's default getfqdn().
    name = socket.gethostname()
    sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def session() -> SMTP:
        smtp = RecordingSMTP(
            handler,
            hostname=name,
            ident=f"{ident} (smtpmail {__version__})",
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls_context,
            require_starttls=require_tls and tls_context is not None,
            authenticator=accept_any if auth_accept_any else None,
            auth_exclude_mechanism=None if auth_accept_any else ["CRAM-MD5"],
            # With a certificate, after STARTTLS only, as every server with TLS
            # (in clear text the sink would teach a client to log in unprotected);
            # without one, in clear text: a test server for clients that log in.
            auth_require_tls=tls_context is not None,
        )
        sessions.add(smtp)
        return smtp

    return CaptureServer(await loop.create_server(session, host, port), sessions)


class BackgroundServer:
    """A capture server in its own thread and event loop (the demo's server)."""

    def __init__(self, handler: CaptureHandler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: CaptureServer | None = None

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_server(self.handler, self.host, self.port, ident="smtpmail demo server"),
            self._loop,
        )
        try:
            self._server = future.result(timeout=30)
        except BaseException:
            self._stop_loop()
            raise
        self.port = self._server.port
        return self

    def __exit__(self, *exc: object) -> None:
        server = self._server
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.close(), self._loop).result(timeout=30)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


class CaptureMaildir(mailbox.Maildir):
    """The capture server's Maildir folder: :class:`mailbox.Maildir` plus
    marking a message seen without rewriting it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, factory=None, create=False)
        self.folder = folder

    def entries(self) -> list[tuple[str, Path, str, float]]:
        """(key, file, flags, delivery time) of every message, read from the
        file names and times alone (Maildir keeps flags after ``:2,`` in the
        name, and mailbox dates a message by its file's time): nothing is
        parsed, so no message, however built, stops the folder loading."""
        found = []
        for sub in ("new", "cur"):
            for entry in os.scandir(self.folder / sub):
                if entry.name.startswith("."):
                    continue
                key, _, info = entry.name.partition(self.colon)
                flags = info[2:] if info.startswith("2,") else ""
                found.append((key, Path(entry.path), flags, entry.stat().st_mtime))
        return found

    def mark_seen(self, key: str) -> None:
        """Give message ``key`` the S flag by renaming its file into cur/ (the
        Maildir convention: flags follow ``:2,`` in the name), as mail readers
        do. ``box[key] = msg`` would instead write the message anew through the
        email package, which "repairs" it (whitespace, a missing closing
        boundary): the octets received must stay as they came.

        Raises KeyError when no file holds ``key``, OSError when it cannot move.
        """
        for sub in ("new", "cur"):
            for entry in os.scandir(self.folder / sub):
                name, _, info = entry.name.partition(self.colon)
                if name != key:
                    continue
                flags = set(info[2:]) if info.startswith("2,") else set()
                seen = f"{key}{self.colon}2,{''.join(sorted(flags | {'S'}))}"
                if (sub, entry.name) != ("cur", seen):
                    os.rename(entry.path, self.folder / "cur" / seen)
                return
        raise KeyError(key)


def open_maildir(path: str | Path) -> CaptureMaildir:
    """The Maildir at ``path``, created (with cur/new/tmp) where any part is missing.

    Raises OSError if that cannot be done (``path`` is a file, say): better
    before the server listens than at the first message.
    """
    folder = Path(path)
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return CaptureMaildir(folder)


def to_maildir(box: mailbox.Maildir, msg: Captured) -> str:
    """Store ``msg`` as a new message; return its key.

    Maildir files use the local line end (LF); Return-Path and X-Original-To
    record the envelope, as a local delivery agent would (RFC 5321 §4.4).
    """
    trace = [f"Return-Path: <{msg.mail_from}>"]
    trace += [f"X-Original-To: {rcpt}" for rcpt in msg.rcpt_tos]
    head = ("\n".join(trace) + "\n").encode("utf-8")
    return box.add(head + msg.content.replace(b"\r\n", b"\n"))


#: C0 controls but tab and line feed, DEL and C1: a terminal acts on them (ESC
#: and CSI start sequences that retitle the window, clear or rewrite the screen).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str) -> str:
    """``text`` safe to print: each control character shown as its escape
    (``\\x1b``), never acted on; a message is data, not terminal commands."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def render(msg: Captured, *, raw: bool = False) -> str:
    """The message for a person: the envelope, then the headers (decoded) and
    the body decoded, or with ``raw`` the whole message exactly as it came."""
    out = [
        f"=== message {msg.number} from {msg.peer}",
        f"MAIL FROM: <{msg.mail_from}>",
        *(f"RCPT TO:   <{rcpt}>" for rcpt in msg.rcpt_tos),
        f"Size:      {len(msg.content)} octets",
    ]
    if msg.tls:
        out.append(f"TLS:       {msg.tls}")
    text = msg.content.replace(b"\r\n", b"\n")
    if raw:
        out += ["--- message", *text.decode("utf-8", "replace").splitlines()]
    else:
        parsed = parse_message(text)
        out += ["--- headers", *_header_lines(parsed), "--- body"]
        out += _limit(_body_lines(parsed))
    out.append(f"=== end of message {msg.number}")
    return "\n".join(for_terminal(line) for line in out) + "\n"


#: What the email package's header parsers raise on a field they cannot read
#: (``From: <`` raises IndexError in CPython 3.11).
HEADER_ERRORS = (ValueError, LookupError, IndexError, AttributeError, TypeError,
                 email.errors.MessageError)  # fmt: skip


#: Deepest MIME nesting shown part by part. Real mail nests a few levels; the
#: email package, and a view walking the tree, recurse once per level.
MAX_MIME_DEPTH = 100


def parse_message(content: bytes, policy: Policy = email.policy.default) -> Message:
    """``content`` parsed by the email package; a message whose multiparts nest
    deeper than :data:`MAX_MIME_DEPTH` (a MIME bomb of a few tens of kB, which
    the parser itself may not even survive) is read as its header alone, the
    body one opaque payload: a capture server shows every message it accepted,
    and one hostile message must not take the inbox down."""
    try:
        msg = email.message_from_bytes(content, policy=policy)
        if _nesting(msg) <= MAX_MIME_DEPTH:
            return msg
    except RecursionError:
        pass
    return BytesParser(policy=policy).parsebytes(content, headersonly=True)


def _nesting(msg: Message) -> int:
    """How deep ``msg``'s parts nest (1: not multipart), counted without
    recursion and no further than one level past :data:`MAX_MIME_DEPTH`."""
    deepest, stack = 0, [(msg, 1)]
    while stack and deepest <= MAX_MIME_DEPTH:
        part, depth = stack.pop()
        deepest = max(deepest, depth)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))
    return deepest


def decoded_header(message: Message, name: str, raw: Any) -> str:
    """One header field's value decoded (RFC 2047 encoded-words, as a mail
    reader shows them), or as it came when the email package cannot parse it:
    a capture server shows every message it accepted."""
    try:
        return str(message.policy.header_fetch_parse(name, raw))
    except HEADER_ERRORS:
        return str(raw)


def _header_lines(message: Message) -> list[str]:
    """One line per header, its value decoded (:func:`decoded_header`) and
    unfolded; raw UTF-8 (RFC 6532) read as UTF-8."""
    lines = []
    for name, raw in message.raw_items():
        value = decoded_header(message, name, raw)
        text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        lines.append(f"{name}: {''.join(text.splitlines())}")  # unfolded, as it came too
    return lines


def _limit(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_BODY_LINES:
        return lines
    rest = len(lines) - MAX_BODY_LINES
    return [*lines[:MAX_BODY_LINES], f"[... {rest} more lines not shown]"]


def _body_lines(message: Message) -> list[str]:
    """Text parts decoded (transfer encoding and charset); other parts summarised."""
    if not message.is_multipart():
        return _part_lines(message)
    lines: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        lines.append(f"[part {part.get_content_type()}]")
        lines += _part_lines(part)
    return lines


def _part_lines(part: Message) -> list[str]:
    payload = part.get_payload(decode=True)
    size = len(payload) if isinstance(payload, bytes) else 0
    filename = part.get_filename()
    if part.get_content_maintype() != "text" or filename:
        name = f" {filename!r}" if filename else ""
        return [f"[{part.get_content_type()}{name}, {size} octets not shown]"]
    try:
        text = part.get_content() if isinstance(part, EmailMessage) else None
    except (LookupError, ValueError):  # an unknown charset or broken encoding
        text = None
    if not isinstance(text, str):
        text = (payload or b"").decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return text.splitlines()
