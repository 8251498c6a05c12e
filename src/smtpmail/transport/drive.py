"""The one drive loop, written once for :class:`~smtpmail.Client` and
:class:`~smtpmail.AsyncClient`.

A session flow (:mod:`smtpmail.protocol`) yields actions: Send, Receive,
StartTLS. The generators here carry them out as *steps*, IO requests a
client's small trampoline (``Client._drive``, ``AsyncClient._drive``: the
same dozen lines with and without ``await``) performs on its stream:

=============  ==============================  ====================================
step           the trampoline does             and sends back
=============  ==============================  ====================================
``CONNECT``    opens a stream (its connector)  None
``READ, t``    ``stream.read(65536, t)``       the bytes (``b""``: end of stream)
``POLL``       ``stream.read_arrived(65536)``   the bytes already there, or None
``WRITE, b``   ``stream.write(b, timeout)``    None
``HANDSHAKE``  ``stream.start_tls(...)``       the :class:`~smtpmail.transport.tls.TLSInfo`
=============  ==============================  ====================================

An exception the stream raises is thrown back in at the step that caused it,
so only the stream's own errors become :class:`~smtpmail.errors.ConnectionLost`
(or ConnectError, TLSError): an ``OSError`` from the caller's message file,
raised inside the flow, keeps its type. Timeouts, unsolicited replies, the
421 rule and the transcript live here and in ``BaseClient``, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable

from smtpmail._log import Logger
from smtpmail.errors import (
    ConnectionLost,
    LocalProtocolError,
    RemoteProtocolError,
    ReplyError,
    ServiceClosing,
    SMTPError,
    TLSError,
    TransportError,
    _caused,
)
from smtpmail.protocol.actions import Content, Flow, Receive, Send
from smtpmail.protocol.commands import command
from smtpmail.protocol.envelope import Envelope, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.protocol.session import Session
from smtpmail.transport._base import (
    BaseClient,
    HookFailed,
    Stage,
    _mark_possibly_delivered,
    connection_survives,
)
from smtpmail.transport.tls import TLSMode, handshake_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, TypeAlias, TypeVar

    T = TypeVar("T")

__all__ = ["CONNECT", "HANDSHAKE", "POLL", "READ", "WRITE", "Steps"]

log = Logger("smtpmail.transport")

CONNECT, READ, POLL, WRITE, HANDSHAKE = range(5)

#: A generator of IO steps ``(kind, argument)`` returning the operation's value.
Steps: TypeAlias = "Generator[tuple[int, Any], Any, T]"

#: How much one read asks for.
CHUNK = 65536
#: At most this many reads (of CHUNK) salvage replies after a failed write.
_SALVAGE_READS = 16
#: The longest wait for the 221 to a QUIT after a refusal while connecting (seconds).
QUIT_GRACE = 2.0


def connecting(client: BaseClient, until: Stage = Stage.AUTH) -> Steps[Reply | None]:
    """TCP (through the client's connector), implicit TLS, then the dialogue up to ``until``."""
    if client._connected:
        raise LocalProtocolError("already connected")
    client._new_session()
    try:
        yield (CONNECT, None)
    except OSError as exc:  # (TimeoutError and gaierror are ones)
        raise _caused(client._connect_error(exc), exc)
    client._connected = True
    client._peer = peer = client._stream.get_extra_info("peername")
    sock_name = client._stream.get_extra_info("sockname")
    try:
        if client.transcript is not None and peer:
            through = "" if client.proxy is None else f" (proxy {client.proxy}) for {client.host}"
            client.transcript("info", f"connected to {peer[0]} port {peer[1]}{through}")
        if client.tls_mode is TLSMode.IMPLICIT:
            yield from _handshake(client)
        if until is Stage.CONNECT:
            return None
        return (yield from steps(client, client._establish(sock_name, until)))
    except BaseException as exc:
        # A refusal (554 greeting, EHLO and HELO refused, STARTTLS refused, AUTH
        # 535) leaves the server waiting for QUIT (RFC 5321 §3.1, §4.1.1.10).
        # Bad input of ours (an EHLO name with a CR in it) sends nothing at all.
        if not (isinstance(exc, ReplyError | TLSError) and connection_survives(exc)):
            client.close()
            raise
        refusal = exc
    # The QUIT is said outside the handler: in the compiled build, an exception
    # thrown into a step there (the QUIT's reply timing out) became the one a
    # bare ``raise`` re-raised, in place of the refusal. Closed whatever ends
    # the wait: a cancelled task or an interrupt there must not leave the
    # connection open and counted as connected.
    try:
        yield from _quit_unanswered(client)
    finally:
        client.close()
    raise refusal


def _quit_unanswered(client: BaseClient) -> Steps[None]:
    """QUIT after a refusal while connecting, its 221 awaited a short while only.

    The caller needs the refusal, and a server silent after it (a tarpit, a
    hostile one) must not hold it for the command timeout; yet closing at once
    can reset the connection before the server read its QUIT (a TLS layer's
    unread record makes the close a RST). The reply is not shown: after a
    refused AUTH it may echo the credentials."""
    quit_ = Send(command("QUIT"), ("QUIT",))
    if client._looking():
        client._note_send(quit_)
    try:
        yield (WRITE, quit_.data)
        yield (READ, min(client.timeouts.for_kind("command"), QUIT_GRACE))
    except OSError:  # (gone already, or silent: nothing more is owed to it)
        pass


def ensured(client: BaseClient, flow: Callable[[Session], Flow[T]]) -> Steps[T]:
    """``flow`` of the session, after a reconnect if the server left while we were idle."""
    if client._connected:
        # One cheap poll per operation: a server that dropped an idle connection
        # (or said 421 and left) costs a reconnect, not a failed transaction.
        # The 421 may have come with the last reply, or in pieces: what decides
        # is the whole of what the parser holds, not this poll's bytes.
        try:
            data = yield (POLL, None)
        except OSError:
            data = b""
        if data:
            client._parser.feed(data)
        try:
            client._unsolicited()  # junk is dropped; a 421 raises
        except ServiceClosing:
            data = b""
        if data == b"":
            log.info("the server closed the idle connection; reconnecting")
            client.close()
    if not client._connected:
        yield from connecting(client)
    return (yield from steps(client, flow(client._session), asked=True))


def sending(
    client: BaseClient,
    items: Iterable[tuple[Envelope, Content]],
    keep_errors: bool,
    results: list[SendResult],
    then_quit: bool = False,
) -> Steps[list[SendResult]]:
    """One transaction per item on this connection (send, send_many); with
    ``then_quit``, QUIT after them (with the last end of data when pipelined)."""

    def transactions(session: Session) -> Flow[list[SendResult]]:
        return session.transactions(
            items, keep_errors=keep_errors, results=results, then_quit=then_quit
        )

    first = len(results)
    try:
        done = client._stamp((yield from ensured(client, transactions)))
    except BaseException as exc:
        if isinstance(items, list):
            # Made before the connection (send's item: checked, and read ahead):
            # those the run did not reach were not tried (a failed connect).
            for _, content in items[len(results) - first :]:
                content.put_back()
        if isinstance(exc, SMTPError):
            exc.results = results  # recipients over a limit go in several transactions
        if isinstance(exc, TransportError) and not exc.possibly_delivered:
            # Cut short after the end of a message's data left, before its reply
            # came (a later write failed): the server may have taken it.
            exc.possibly_delivered = any(
                r.end_sent and r.reply is None and r.error is None for r in results
            )
        raise
    if then_quit:
        yield from quitting(client, asked=True)  # (a reply was just read: see steps())
    return done


def entering(client: BaseClient) -> Steps[None]:
    if not client._connected:
        yield from connecting(client)


def quitting(client: BaseClient, asked: bool = False) -> Steps[Reply | None]:
    """QUIT and close; None when the connection was already gone (``asked``: see steps())."""
    if not client._connected:
        client.close()
        return None
    try:
        return (yield from steps(client, client._session.quit(), asked))
    except SMTPError:
        return None
    finally:
        client.close()


def rehearsing(
    client: BaseClient, stage: Stage, item: tuple[Envelope, Content] | None
) -> Steps[None]:
    """The dialogue up to ``stage``, then QUIT (``rehearse``). No data is sent:
    a file the item's content was read from goes back (``Content.put_back``)."""
    try:
        yield from _rehearsing(client, stage, item)
    finally:
        if item is not None:
            item[1].put_back()


def _rehearsing(
    client: BaseClient, stage: Stage, item: tuple[Envelope, Content] | None
) -> Steps[None]:
    yield from connecting(client, stage)
    if stage is Stage.CONNECT:
        client.close()  # the greeting was not awaited: no QUIT (RFC 5321 §3.1)
        return
    failed: BaseException | None = None
    try:
        yield from steps(client, client._rehearsal(stage, item))
    except BaseException as exc:
        if not connection_survives(exc):
            client.close()
            raise
        failed = exc
    yield from quitting(client)  # (outside the handler: see Transactions._failed_write)
    if failed is not None:
        raise failed


def steps(client: BaseClient, flow: Flow[T], asked: bool = False) -> Steps[T]:
    """Carry out ``flow``'s actions; close the connection when it is left unknown.

    Before a command that expects the next reply, what the server sent
    unasked is dropped (:func:`_drop_unsolicited`). The kernel is asked for
    it (a system call) only before the operation's first command, after the
    connection may have been idle, and not when the caller just ``asked``:
    once a reply was read, what the server sent with it is in the parser's
    buffer, and a command written right after it leaves nothing else to see.

    A failed write is thrown into the flow where it wrote (a ConnectionLost),
    after what had already arrived is salvaged (:func:`_salvage`): a flow with
    replies due reads them from there (nothing more is written or waited for)
    and they decide their commands; then the connection is closed.
    """
    if not client._connected:
        flow.close()
        raise LocalProtocolError("not connected")
    looking = client._looking()  # (asked once: see BaseClient._looking)
    client._session.transcribing = looking  # (no command lines rendered for nobody)
    result: list[Reply] | None = None
    thrown: BaseException | None = None  # into the flow, where it asked to write
    broken: ConnectionLost | None = None  # a write failed (see _salvage)
    try:
        while True:
            try:
                action = flow.send(result) if thrown is None else flow.throw(thrown)
            except StopIteration as stop:
                if broken is not None:  # (the replies salvaged decided all it did)
                    client.close()
                return stop.value  # type: ignore[no-any-return]
            result = thrown = None
            if broken is not None and type(action) is not Receive:
                thrown = broken  # nothing more is written on a broken connection
            elif type(action) is Send:
                if action.no_reply_pending and (not asked or client._parser.buffered):
                    # (a generator only when there may be something to drop)
                    yield from _drop_unsolicited(client, not asked)
                if looking and (action.transcript_lines or action.content_octets):
                    client._note_send(action)
                try:
                    yield (WRITE, action.data)
                except OSError as exc:
                    thrown = broken = _broke(client, exc)
                if thrown is not None:  # (outside the handler: see Transactions._failed_write)
                    yield from _salvage(client)
            elif type(action) is Receive:
                try:
                    result = yield from _replies(client, action, looking, broken)
                except TransportError as exc:
                    if not exc._replies_read:
                        raise
                    thrown = exc  # (per_reply: the flow records those read first)
                    continue
                asked = True
            else:  # StartTLS
                try:
                    early = yield (POLL, None)
                except OSError as exc:
                    raise _broke(client, exc)
                client._before_handshake(len(early or b""))
                yield from _handshake(client)
    except HookFailed as failed:
        client.close()
        hook_error = failed.__cause__
        assert hook_error is not None  # (HookFailed is always raised from it)
        raise _caused(hook_error, None)
    except BaseException as exc:
        if broken is not None or not connection_survives(exc):
            client.close()  # (a refusal salvaged after a failed write leaves it broken)
        if exc is broken:  # (no reply the flow read explained the failure)
            closing = _left_with_421(client)
            if closing is not None:
                raise _caused(closing, exc)
        raise
    finally:
        flow.close()


def _handshake(client: BaseClient) -> Steps[None]:
    """The TLS handshake (implicit TLS or after STARTTLS) and its record."""
    try:
        info = yield (HANDSHAKE, None)
    except OSError as exc:
        client.close()
        raise _caused(handshake_error(exc, f"{client.host}:{client.port}"), exc)
    client._tls_info = info
    log.info("TLS established with %s: %s", client.host, info)
    if client.transcript is not None:
        client.transcript("info", f"TLS: {info}")


def _drop_unsolicited(client: BaseClient, ask_kernel: bool) -> Steps[None]:
    """Before a command that expects the next reply, drop whatever already arrived
    (in the parser's buffer; with ``ask_kernel``, in the stream's too)."""
    if ask_kernel:
        try:
            data = yield (POLL, None)
        except OSError as exc:
            raise _broke(client, exc)
        if data == b"":
            client.close()
            raise ConnectionLost(f"the server at {client.host}:{client.port} closed the connection")
        if data:
            client._parser.feed(data)
    if client._parser.buffered:
        client._unsolicited()


def _salvage(client: BaseClient) -> Steps[None]:
    """A write failed: keep what the server sent before it left (or stopped
    reading). Its replies answer commands written before, in order, and still
    decide them: a 250 delivered that message, a 5xx refused it (RFC 2920 §3.1:
    a server may answer a pipelined group while the client still writes).
    Only bytes already here are taken (the stream's buffer, the kernel's), in
    a bounded number of reads that never wait: the peer may be dead."""
    for _ in range(_SALVAGE_READS):
        try:
            data = yield (POLL, None)
        except OSError:  # (a reset after the last bytes, or the stream closed)
            return
        if not data:  # None: nothing more has arrived; b"": the end of the stream
            return
        client._parser.feed(data)


def _left_with_421(client: BaseClient) -> ServiceClosing | None:
    """After a failed write: when the next reply the server sent before it left
    is a 421, that is why it left (RFC 5321 §3.8), and a busy server's signal."""
    try:
        reply = client._parser.maybe_next_reply()
    except Exception:  # malformed: it explains nothing
        return None
    if reply is None or reply.code != 421:
        return None
    client._note_reply(reply)
    return client._closing(reply)


def _replies(
    client: BaseClient, action: Receive, looking: bool, broken: ConnectionLost | None = None
) -> Steps[list[Reply]]:
    """``action.count`` replies, each within its own deadline (RFC 5321 §4.5.3.2).

    With ``action.arrived``, only those the parser already holds (no system
    call). After a failed write (``broken``) only the replies already salvaged
    count: when they run out, the connection's failure is this Receive's,
    possibly delivered if it awaited an end of data's reply. A 421 ends the
    list, whatever the count: nothing follows it (the session raises it)."""
    replies: list[Reply] = []
    if action.arrived:
        while (
            len(replies) < action.count
            and (reply := _take_reply(client, action, looking)) is not None
        ):
            replies.append(reply)
            if reply.code == 421:
                break
        return replies
    # (inline, not a generator of its own: every wait for a reply runs it)
    count = action.count
    timeout = 0.0  # (looked up at the first wait: replies are often buffered already)
    deadline = 0.0
    try:
        while len(replies) < count:
            reply = _take_reply(client, action, looking)
            if reply is not None:
                replies.append(reply)
                if reply.code == 421:
                    break
                deadline = 0.0  # the next reply has a deadline of its own
                continue
            if broken is not None:
                err = ConnectionLost(f"{broken}; no reply to {action.label} had arrived")
                _mark_possibly_delivered(err, action)
                raise _caused(err, broken)
            if not deadline:
                timeout = timeout or client.timeouts.for_kind(action.timeout)
                deadline = time.monotonic() + timeout
                remaining = timeout  # (the same number each time: no settimeout call)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise client._timeout_error(action)
            try:
                data = yield (READ, remaining)
            except TimeoutError:
                raise _caused(client._timeout_error(action), None)
            except OSError as exc:
                err = ConnectionLost(f"connection lost waiting for the reply to {action.label}")
                _mark_possibly_delivered(err, action)
                raise _caused(err, exc)
            if not data:
                err = ConnectionLost(
                    f"the server closed the connection before replying to {action.label}"
                )
                _mark_possibly_delivered(err, action)
                raise err
            client._parser.feed(data)
    except TransportError as exc:
        if action.per_reply and replies:  # (each decided what it answers: see Receive)
            exc._replies_read = tuple(map(action.shown, replies))
        raise
    return replies


def _take_reply(client: BaseClient, action: Receive, looking: bool) -> Reply | None:
    """The next whole reply in the parser, or None; noted when someone is ``looking``.

    A 421 (RFC 5321 §3.8) is returned like any reply, the last one read: the
    server is leaving. The session raises it (``Session._receive``), once
    the replies read before it with it have decided what they answer."""
    hidden = False
    try:
        reply = client._parser.maybe_next_reply()
    except RemoteProtocolError:
        if action.secrets is None:
            raise
        # The parser quotes the bad line, which may echo the credentials: that
        # error is dropped, and this one raised once its handler is left, so that
        # it is not even its hidden context (which "from None" would keep).
        hidden, reply = True, None
    if hidden:
        raise RemoteProtocolError(
            f"malformed reply to {action.label} (not shown: it may echo the credentials)"
        )
    if reply is not None:
        if looking:
            client._note_reply(reply, action)
        if reply.code == 421:
            client._connected = False
    return reply


def _broke(client: BaseClient, exc: OSError) -> ConnectionLost:
    """The error for a stream that failed, ``exc`` its cause."""
    return _caused(ConnectionLost(f"connection to {client.host}:{client.port} broke: {exc}"), exc)
