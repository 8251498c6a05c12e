"""Mail transactions: MAIL, RCPT, DATA or BDAT (RFC 5321 §3.3, RFC 2920, RFC 3030, RFC 2033).

:class:`Transactions` is the half of :class:`~smtpmail.protocol.session.Session`
that sends messages; the session (set-up, STARTTLS, AUTH, replies) is the other.

Pipelining (RFC 2920) is used whenever the server offers it: the MAIL, RCPT
and DATA commands of a transaction go out in one write, and when several
messages are sent on one connection the end of one message's data and the
next transaction's commands share a write, so each message costs one round
trip. Every reply is checked against the command it answers. A server that
answers 503 to a MAIL sent that way gets the transaction again alone, and the
connection stops doing it; recipients refused as too many (RFC 5321
§4.5.3.1.10) get the message in further transactions on the connection.

With CHUNKING too, BDAT needs no 354 (RFC 3030 §4.2), so ``send_many`` keeps
a window of whole transactions in flight: MAIL, RCPT, ``BDAT n LAST`` and the
chunk of each go out as soon as its content is read, bounded by
``Options.transaction_window`` transactions and ``Options.window_octets``
unanswered octets; the replies are matched to them in order.

When a write fails (the transport throws its error in at the ``Send``), the
replies the server sent before it left still decide the transactions they
answer: the window lands its flights, and a refusal sent mid-data is the
message's fate; only then does the failure stand for the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from smtpmail._log import Logger
from smtpmail.errors import (
    DataRefused,
    ExtensionNotSupported,
    InputError,
    LocalProtocolError,
    MessageTooLarge,
    RecipientsRefused,
    RemoteProtocolError,
    ReplyError,
    SenderRefused,
    ServiceClosing,
    TransportError,
)
from smtpmail.protocol import commands as cmd
from smtpmail.protocol.actions import Content, Flow, Options, Send, TimeoutKind
from smtpmail.protocol.data import CHECK, DataEncoder, encode_buffer
from smtpmail.protocol.envelope import Envelope, RecipientResult, SendResult
from smtpmail.protocol.extensions import Extensions
from smtpmail.protocol.guard import Guarded, one_at_a_time
from smtpmail.protocol.reply import Reply

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import TypeAlias

    from smtpmail.protocol.commands import Path

    #: A message's content as DATA sends it (:func:`_encoded`).
    _Encoded: TypeAlias = tuple[DataEncoder, Iterable[bytes | memoryview]]

__all__ = ["Transactions"]

log = Logger("smtpmail.protocol")  # logging itself is imported when needed (_log)

_NOTHING: tuple[str, ...] = ()
#: The tail of a connection's last end of data, with ``then_quit`` (RFC 2920 §3.1).
_QUIT = b"QUIT\r\n"

#: A last piece of content smaller than this shares one write with the ending.
_JOIN_BELOW = 64 * 1024


def _tail(following: _Following | None) -> tuple[bytes, tuple[str, ...]]:
    """What shares a write with an end of data: ``following``'s tail, or nothing."""
    if following is None or not following.pipelines:
        return b"", _NOTHING
    return following.tail()


class _Following:
    """The transaction after the current one, taken once, when first asked for;
    ``pipelines``: it may share a write with the current one's end of data, and
    ``quit_after``: QUIT does when there is none (RFC 2920 §3.1). One serves a
    whole run of transactions: :meth:`expect` readies it for each.

    ``fresh``: the plan taken is a new item's, whose transaction has not begun:
    its result, appended to ``results`` when it was taken, goes again if the
    run ends before it begins (:meth:`unlist`). A result is listed once its
    transaction begins (``Client.send_many``): one taken ahead and never begun
    was not tried, and a caller (the outbox) must not count it as tried."""

    __slots__ = (
        "_next",
        "_results",
        "error",
        "fresh",
        "pipelines",
        "plan",
        "quit_after",
        "shown",
        "taken",
    )

    def __init__(
        self,
        take: Callable[[], _Plan | None],
        results: list[SendResult],
        *,
        quit_after: bool,
        shown: bool,
    ) -> None:
        self._next = take
        self._results = results
        self.quit_after = quit_after
        self.shown = shown  # (the session's ``transcribing``)
        self.plan: _Plan | None = None
        self.error: Exception | None = None
        self.taken = False
        self.fresh = False
        self.pipelines = False

    def expect(self, plan: _Plan | None, pipelines: bool) -> None:
        """Before the current transaction's end: ``plan`` follows it (its further
        transaction, for recipients over the server's limit) or, when None, the
        next one taken."""
        self.plan = plan
        self.taken = plan is not None
        self.fresh = False
        self.error = None
        self.pipelines = pipelines

    def take(self) -> tuple[_Plan | None, Exception | None]:
        """The plan (None when there is none) and what taking it raised."""
        if not self.taken:
            self.taken = True
            listed = len(self._results)
            try:
                self.plan = self._next()
            except Exception as exc:  # raised once the current message has ended
                self.error = exc
            plan = self.plan
            # (A plan sent again or a further one, from the queue, was listed before.)
            self.fresh = plan is not None and len(self._results) > listed
        return self.plan, self.error

    def unlist(self) -> None:
        """The run ends: a plan taken ahead and not begun was not tried (:func:`_withdraw`)."""
        plan = self.plan
        if self.fresh and plan is not None:
            _withdraw(plan, self._results)
        self.fresh = False

    def tail(self) -> tuple[bytes, tuple[str, ...]]:
        """With ``pipelines``, what shares a write with the current end of data
        (and its transcript lines): the next transaction's commands, QUIT, or
        nothing. (Without, the next is taken once the end has left: see
        Transactions._body.)"""
        nxt, failed = self.take()
        if nxt is not None:
            self.fresh = False  # (begun: its commands go in this write)
            return nxt.group(False, self.shown)[:2]
        if self.quit_after and failed is None:
            return _QUIT, ("QUIT",)
        return b"", _NOTHING


def _withdraw(plan: _Plan, results: list[SendResult]) -> None:
    """The run ends before ``plan``, a new item's transaction taken ahead, began:
    its message was not tried. Its result leaves ``results`` (the last one:
    nothing was taken after it) and its content is put back (``Content.put_back``)."""
    if results and results[-1] is plan.result:
        results.pop()
        plan.content.put_back()


class _Plan:
    """One mail transaction: its command lines, and what its replies decided.

    A message whose recipients are more than the server takes at once goes
    in several (RFC 5321 §4.5.3.1.10): ``rest`` is the next transaction, for
    the recipients refused as too many. All share the message's ``result``;
    its ``reply`` and ``error`` are set when the last transaction ends.
    """

    __slots__ = (
        "accepted",
        "bdat",
        "before_end",
        "content",
        "error",
        "head",
        "mail",
        "paths",
        "rcpts",
        "reply",
        "rest",
        "result",
    )

    def __init__(  # noqa: PLR0917 (the parts of one transaction)
        self,
        content: Content,
        mail: bytes,
        rcpts: list[bytes],
        paths: list[Path],
        bdat: bool,
        result: SendResult,
        head: _Plan | None = None,
        before_end: Callable[[tuple[str, ...]], None] | None = None,
    ) -> None:
        self.content = content
        #: The message's hook for the end of its data (Content.before_end): kept
        #: here, as the content sent may be its 7-bit form, made without it.
        self.before_end = before_end
        self.mail = mail
        self.rcpts = rcpts
        self.paths = paths
        self.bdat = bdat
        self.result = result
        #: The message's first transaction (this one, unless it is a further one).
        self.head = head or self
        self.accepted: list[str] = []
        self.reply: Reply | None = None
        self.error: Exception | None = None
        self.rest: _Plan | None = None

    def group(self, rset: bool, shown: bool) -> tuple[bytes, tuple[str, ...], int]:
        """The commands (RSET first with ``rset``) in one write, their lines as the
        transcript shows them (with ``shown``; else none), and how many they are."""
        lines = [self.mail, *self.rcpts]
        if not self.bdat:
            lines.append(b"DATA\r\n")
        if rset:
            lines.insert(0, b"RSET\r\n")
        data = b"".join(lines)
        return data, _show(data) if shown else _NOTHING, len(lines)

    def end_of_data(self, *, unanswered: bool = False) -> None:
        """This transaction's end of data is about to leave: every other octet of
        the content has been read (RFC 5321 §4.1.1.4, RFC 3030 §2). Whatever the
        hook raises stops it here, so that the end of data never leaves.

        The hook is given the recipients the server accepted, or with
        ``unanswered`` (a window of transactions: MAIL, RCPT and ``BDAT LAST``
        in one write) every recipient of the transaction, as none of their
        replies is in yet."""
        if self.before_end is not None:
            who = [path.address for path in self.paths] if unanswered else self.accepted
            self.before_end(tuple(who))

    def body(self) -> Content:
        """The content to stream; a further transaction reads it again from its start."""
        return self.content if self.head is self else self.content.again()


class _Flight:
    """A transaction written whole (RSET, commands, BDAT, chunk) whose replies are
    unread: ``count`` of them, for ``octets`` written; ``after``: written while an
    earlier transaction's end was in flight; ``got``: its replies read so far
    (those that came with an earlier one's)."""

    __slots__ = ("after", "count", "got", "octets", "plan")

    def __init__(self, plan: _Plan, count: int, octets: int, after: bool) -> None:
        self.plan = plan
        self.count = count
        self.octets = octets
        self.after = after
        self.got: list[Reply] = []


class _Offer:
    """What the server's EHLO reply lets a transaction use: read once per EHLO, not
    once per message (``send_many`` plans thousands on one connection)."""

    __slots__ = (
        "binarymime",
        "chunking",
        "dsn",
        "eight_bit_ok",
        "eightbitmime",
        "extensions",
        "size",
        "size_limit",
        "smtputf8",
    )

    def __init__(self, ext: Extensions) -> None:
        self.extensions = ext
        self.chunking = "CHUNKING" in ext
        self.binarymime = self.chunking and "BINARYMIME" in ext  # (only with BDAT: RFC 3030 §3)
        self.eightbitmime = "8BITMIME" in ext
        self.eight_bit_ok = self.eightbitmime or self.binarymime
        self.size = "SIZE" in ext
        self.size_limit = ext.size_limit
        self.smtputf8 = "SMTPUTF8" in ext
        self.dsn = "DSN" in ext


def _known_size(content: Content) -> int | None:
    """The content's size before a byte of it is read: held in memory, or declared."""
    return len(content.data) if content.data is not None else content.size


def _show(data: bytes) -> tuple[str, ...]:
    """Command lines, each ended by CRLF (none has another: they are validated), as
    the transcript shows them: one decode for a whole group."""
    return tuple(data[:-2].decode("utf-8", "replace").split("\r\n"))


def _ok(reply: Reply, code: int | None = None) -> bool:
    return reply.code == code if code is not None else 200 <= reply.code < 300


def _too_many(reply: Reply) -> bool:
    """A refusal for being over the server's recipient limit (RFC 5321 §4.5.3.1.10):
    452 with 4.5.3 (RFC 3463: too many recipients) or with no enhanced code.
    Only after an accepted RCPT of the same transaction does it mean that."""
    return reply.code == 452 and reply.enhanced_status in (None, "4.5.3")


def _out_of_step(command: str, reply: Reply) -> RemoteProtocolError:
    """The error a 503 (bad sequence of commands) raises, to MAIL, or to RCPT, DATA,
    BDAT or the end of data after an accepted MAIL (and not after an earlier
    refusal): the server and the client disagree about where the dialogue is,
    which says nothing about the message: it is never recorded as the message's
    fate. The error is transient and the connection is closed (replies may be
    paired with the wrong commands from here on). The callers test the code
    themselves: every reply of every message is tested, and a call each cost
    more than the test."""
    return RemoteProtocolError(
        f"the server answered {command} with {reply.code} {reply.text_oneline()!r} "
        "(out of step with the commands sent); nothing was delivered by this transaction"
    )


class Transactions(Guarded):
    """The mail transactions of a :class:`~smtpmail.protocol.session.Session`
    (mixed into it): the state they read and change is the session's."""

    # Declared here only: Session's __init__ assigns them without annotations (mypyc
    # reports an attribute declared in a class and again in a subclass twice to the
    # cycle collector, which then clears objects still in use).
    options: Options
    extensions: Extensions
    helo_reply: Reply | None
    needs_rset: bool
    quit_sent: bool
    refuses_pipelined_mail: bool
    tls_authenticated: bool
    transcribing: bool
    #: What ``extensions`` offers a transaction (:meth:`_offer`); None until asked.
    offered: _Offer | None

    # Defined by Session, which reads the replies for both halves. A method, not a
    # TYPE_CHECKING block: mypyc (the optional compiled build) compiles no other statement
    # in a class body.
    def _receive(
        self,
        count: int,
        label: str,
        timeout: TimeoutKind = "command",
        *,
        auth: bool = False,
        arrived: bool = False,
        per_reply: bool = False,
    ) -> Flow[list[Reply]]:
        raise NotImplementedError

    def _shown(self, line: bytes) -> tuple[str, ...]:
        """A command as the transcript shows it, when anyone looks (``transcribing``)."""
        return _show(line) if self.transcribing else _NOTHING

    def _rset(self) -> Flow[Reply]:
        """RSET, within a flow (Session.rset is the guarded one users start)."""
        yield Send(cmd.command("RSET"), ("RSET",), no_reply_pending=True)
        (reply,) = yield from self._receive(1, "RSET")
        if reply.code >= 400:
            raise ReplyError("RSET", reply)
        self.needs_rset = False
        return reply

    def _reset_before(self, plan: _Plan) -> Flow[None]:
        """RSET before ``plan``'s transaction, in lock-step.

        RFC 5321 §4.1.1.5 says a server MUST accept RSET: one that refuses it
        has left the connection in a state the client cannot know. As Postfix
        does (it stops reusing a connection whose RSET fails), the connection
        carries nothing more: QUIT, and ``plan``'s message gets, in its result,
        the error raised, transient whatever the RSET's reply said (not a
        refusal of the message, which was not sent). The messages not yet
        taken from the batch were not attempted: they go on another connection."""
        yield Send(cmd.command("RSET"), ("RSET",), no_reply_pending=True)
        (reply,) = yield from self._receive(1, "RSET")
        if reply.code < 400:
            self.needs_rset = False
            return
        error = RemoteProtocolError(
            f"the server refused RSET ({reply.code} {reply.text_oneline()}), so its state is "
            "unknown and the connection was closed; this message was not sent"
        )
        self._not_sent(plan, error)
        self.quit_sent = True
        yield Send(_QUIT, ("QUIT",), no_reply_pending=True)
        try:  # noqa: SIM105 (contextlib is not imported for this: start-up time)
            yield from self._receive(1, "QUIT")
        except (TransportError, ReplyError):  # (a 421, gone: nothing more is owed to it)
            pass
        raise error

    @one_at_a_time
    def envelope_only(
        self, envelope: Envelope, content: Content, *, rcpt: bool
    ) -> Flow[list[Reply]]:
        """MAIL FROM (and with ``rcpt`` each RCPT TO), the very lines a send would
        write, one at a time and no DATA: a rehearsal that delivers nothing
        (swaks's --quit-after mail/rcpt). A refusal raises :class:`ReplyError`."""
        if self.helo_reply is None:
            raise LocalProtocolError("mail transaction before EHLO/HELO")
        plan = self._plan(envelope, content)
        replies = []
        for label, line in [("MAIL FROM", plan.mail), *(("RCPT TO", r) for r in plan.rcpts)]:
            if label == "RCPT TO" and not rcpt:
                break
            yield Send(line, self._shown(line), no_reply_pending=True)
            (reply,) = yield from self._receive(1, label)
            if reply.code >= 400:
                raise ReplyError(label, reply)
            replies.append(reply)
        return replies

    @one_at_a_time
    def transactions(
        self,
        items: Iterable[tuple[Envelope, Content]],
        *,
        keep_errors: bool,
        results: list[SendResult] | None = None,
        then_quit: bool = False,
    ) -> Flow[list[SendResult]]:
        """Send each (envelope, content); one result per item, in order.

        With ``keep_errors`` a refused transaction or a bad item is recorded in
        its result's ``error``; without it, the first such error is raised.
        Connection-level failures (421, a dropped connection, a timeout) raise;
        ``results`` (when given) then holds the results so far. After a 421
        each of them is decided: replies come in order (RFC 2920 §3.1), so a
        transaction not answered before it was not taken, and holds the
        :class:`ServiceClosing` (see :func:`_closed`). After a lost connection a
        result with ``end_sent`` and no reply may have been delivered.

        Recipients refused as too many (452, RFC 5321 §4.5.3.1.10) are sent the
        same content in further transactions on this connection; the message's
        result holds every recipient's final reply. A MAIL refused with 503
        because it came in one write with the end of the previous message's data
        is sent again once that data's reply is in (see ``refuses_pipelined_mail``).

        ``then_quit``: these are the connection's last transactions, so QUIT
        rides in one write with the last end of data when the server pipelines
        (RFC 2920 §3.1: QUIT may end a pipelined group), saving the round trip
        QUIT alone would cost; ``quit_sent`` says so, and :meth:`quit` then
        only reads its reply. The end of data's reply still decides the result.
        """
        if self.helo_reply is None:
            raise LocalProtocolError("mail transaction before EHLO/HELO")
        if results is None:
            results = []
        first = len(results)
        it = iter(items)
        try:
            if "PIPELINING" in self.extensions:
                queued: deque[_Plan] = deque()
                if keep_errors and not then_quit and self._windows:
                    queued = yield from self._windowed(it, results)
                yield from self._pipelined(it, results, keep_errors, then_quit, queued)
            else:
                yield from self._lockstep(it, results, keep_errors)
        except ServiceClosing as closing:
            _closed(results[first:], closing)
            raise
        return results

    def _pipelined(
        self,
        it: Iterator[tuple[Envelope, Content]],
        results: list[SendResult],
        keep: bool,
        then_quit: bool,
        queued: deque[_Plan],
    ) -> Flow[None]:
        plan = self._next_plan(it, results, keep, queued)
        if plan is None:
            return
        rset = self.needs_rset
        data, shown, n = plan.group(rset, self.transcribing)
        yield Send(data, shown, 0, 0, True)  # no_reply_pending (by position: no dict)
        after_data = False  # plan's group shared a write with the previous end of data
        # The next item is taken for its commands to ride with this message's
        # end, and no sooner: planning it may scan it whole for SIZE (RFC 1870),
        # which the server, this message's data to read, then does not wait
        # for. When taking it fails (its source cannot be read, the caller's
        # iterator raises), this message still ends first. (One for the whole
        # run: a new one and its lambda cost every message 2% of its work.)
        following = _Following(
            lambda: self._next_plan(it, results, keep, queued),
            results,
            quit_after=then_quit,
            shown=self.transcribing,
        )
        try:
            while plan is not None:
                replies = yield from self._receive(n, "MAIL")
                if rset:
                    replies = replies[1:]  # the RSET's reply: nothing depends on it
                self.needs_rset = False
                if after_data and replies[0].code == 503:
                    # Not attempted: sent again alone, the previous data's reply now in.
                    yield from self._refused_after_data(plan, replies)
                    data, shown, n = plan.group(False, self.transcribing)
                    yield Send(data, shown, 0, 0, True)  # no_reply_pending (by position: no dict)
                    after_data = rset = False
                    continue
                go = self._evaluate(plan, replies)
                following.expect(plan.rest, self._pipelines_messages)
                sent_next = False
                if go:
                    data_replies, sent_next = yield from self._body(plan, following)
                    if sent_next and following.plan is None:  # the tail was QUIT
                        self.quit_sent, sent_next = True, False
                    self._finish(plan, data_replies, keep)
                else:
                    ended = yield from self._end_data_alone(plan, replies)
                    if not ended and _ok(replies[0]):
                        self.needs_rset = True
                    self._fail_pending(plan, keep)
                nxt, failed = following.take()
                if failed is not None:
                    raise failed
                following.fresh = False  # (begun: its commands go next, unless in the tail)
                rset = False
                if nxt is not None and not sent_next:
                    rset = self.needs_rset
                    data, shown, _ = nxt.group(rset, self.transcribing)
                    yield Send(data, shown, 0, 0, True)  # no_reply_pending (by position: no dict)
                if nxt is not None:
                    n = len(nxt.rcpts) + (1 if nxt.bdat else 2) + (1 if rset else 0)
                after_data = sent_next
                plan = nxt
        except BaseException:  # (a taken item not begun was not tried: see _Following)
            following.unlist()
            raise

    @property
    def _pipelines_messages(self) -> bool:
        """May a transaction share a write with the end of the previous data?"""
        return self.options.pipeline_messages and not self.refuses_pipelined_mail

    def _refused_after_data(self, plan: _Plan, replies: list[Reply]) -> Flow[None]:
        """503 to a MAIL sent in one write with the end of the previous message's
        data: the server refuses such pipelining (RFC 2920 §3.1 allows it), and
        its replies to this group say nothing about the message. Stop sending
        transactions that way on this connection."""
        log.info(
            "the server refused MAIL pipelined after the end of data (%s %s); "
            "each transaction now waits for the previous one's reply",
            replies[0].code,
            replies[0].text_oneline(),
        )
        self.refuses_pipelined_mail = True
        yield from self._end_data_alone(plan, replies)

    def _end_data_alone(self, plan: _Plan, replies: list[Reply]) -> Flow[bool]:
        """DATA was accepted though the transaction was not (RFC 2920 §3.1): end it
        with the terminator alone and ignore the answer. True when that happened.

        Its reply is awaited as a command's: with no recipient (or no sender)
        accepted, no message can be taken, so a connection lost there leaves
        none possibly delivered (the data_end kind would say one was)."""
        if plan.bdat or replies[-1].code != 354:
            return False
        yield Send(b".\r\n", (".",))
        yield from self._receive(1, "end of data")
        return True

    @property
    def _windows(self) -> bool:
        """May whole transactions be in flight at once (RFC 3030 §4.2, RFC 2920 §3.1)?
        With CHUNKING, not in LMTP (how many replies BDAT LAST gets depends on
        the RCPT replies), and not with a server that refuses MAIL after data."""
        return (
            self.options.transaction_window > 1
            and "CHUNKING" in self.extensions
            and not self.options.lmtp
            and self._pipelines_messages
        )

    def _windowed(
        self, it: Iterator[tuple[Envelope, Content]], results: list[SendResult]
    ) -> Flow[deque[_Plan]]:
        """Send the items' transactions in a window (refused ones are recorded).

        Each transaction is MAIL, RCPT, ``BDAT n LAST`` and the chunk, its content
        read just before (so an "end of data sent" mark made by that read comes
        just before its own ``BDAT ... LAST``). Replies are read when the window
        is full (``transaction_window`` transactions, or ``window_octets`` octets
        unanswered): the oldest transaction's, waited for, then those of every
        later one that came with them. As many transactions as that opened room
        for are then written together, in one write: the server reads them in
        one go and answers them in one, instead of one segment each way per
        message. A message over the octet bound goes alone once the window is
        empty, which then resumes.

        Returns the transactions still to send without the window: when the
        server turned out to refuse MAIL pipelined after the end of data (they
        go one at a time), or from the first message of unknown size on.
        """
        flights: deque[_Flight] = deque()
        unsent: list[tuple[_Flight, bytes, tuple[str, ...]]] = []  # written together, later
        queued: deque[_Plan] = deque()
        window = self.options.transaction_window
        room = self.options.window_octets
        octets = 0
        refill = 0  # transactions to gather into the next write: the room replies opened
        left_open = False  # the last transaction read may have left the server's open
        failed: Exception | None = None
        # A new item's transaction taken, not yet written: not tried if the run
        # ends there (a full window waits for the oldest one's replies first).
        ahead: _Plan | None = None
        try:
            while not self.refuses_pipelined_mail:
                listed = len(results)
                try:
                    plan = self._next_plan(it, results, True, queued)
                except Exception as exc:  # raised below, once the window has landed
                    failed = exc
                    break
                ahead = plan if len(results) > listed else None
                if plan is None:
                    failed = yield from self._write(unsent, flights)
                    if failed is not None or not flights:
                        break
                    flight = flights.popleft()
                    octets -= flight.octets
                    left_open = yield from self._land(flight, queued, left_open)
                    continue
                size = _known_size(plan.content)
                alone = size is None or size > room
                if unsent and (
                    alone or len(flights) + len(unsent) >= window or octets + (size or 0) > room
                ):
                    failed = yield from self._write(unsent, flights)  # before any reply is awaited
                    if failed is not None:
                        break
                    refill = 0
                while flights and (alone or len(flights) >= window or octets + (size or 0) > room):
                    flight = flights.popleft()
                    octets -= flight.octets
                    left_open = yield from self._land(flight, queued, left_open)
                    refill += 1
                    # The replies that came with these: their room is taken in the same write.
                    while flights and (yield from self._arrived(flights[0])):
                        flight = flights.popleft()
                        octets -= flight.octets
                        left_open = yield from self._land(flight, queued, left_open)
                        refill += 1
                if self.refuses_pipelined_mail or size is None:
                    # A stream of unknown size cannot be known to fit before it is
                    # read: from here on, one end of data in flight at a time, the
                    # next group riding with it, as without the window.
                    queued.appendleft(plan)
                    break
                if alone:
                    ahead = None  # (begun: its commands go next)
                    left_open = yield from self._alone(plan, queued)
                    refill = 0
                    continue
                try:
                    flight, data, lines = self._prepare(plan, after=bool(flights or unsent))
                except Exception as exc:  # its content could not be read: raised below
                    failed = exc
                    break
                unsent.append((flight, data, lines))
                ahead = None  # (written before any reply is awaited)
                octets += flight.octets
                if len(unsent) >= refill:
                    # Only after a landing is more than one gathered: the items come
                    # from the caller's iterator, which may wait (a rate limit), and a
                    # transaction read must not wait for the next one to leave.
                    failed = yield from self._write(unsent, flights)
                    if failed is not None:
                        break
                    refill = 0
            # Those read ahead of a failure still go (a failed write left none), and
            # the transactions in flight are decided by the replies the server sent
            # for them, when those are in, before the failure is raised.
            broke = yield from self._write(unsent, flights)
            failed = failed or broke
            while flights:
                left_open = yield from self._land(flights.popleft(), queued, left_open)
            if failed is not None:
                raise failed
            return queued
        except BaseException:
            if ahead is not None:
                _withdraw(ahead, results)
            raise

    def _prepare(self, plan: _Plan, *, after: bool) -> tuple[_Flight, bytes, tuple[str, ...]]:
        """One whole transaction, ready to write; its replies are read later (:meth:`_land`).

        RSET goes first, in every one (a single rule). The transaction before
        may still be in flight, its RCPT replies not in: when the server refused
        every one, that MAIL may still stand (Exim answers that ``BDAT ... LAST``
        with 503 and keeps the transaction open; RFC 3030 §2 leaves it to the
        server), so this MAIL would get "503 sender already given" and this RCPT
        and BDAT would land in the old transaction, under the old reverse-path.
        RSET ends it (RFC 5321 §4.1.1.5) for the cost of one reply, no round trip."""
        self.needs_rset = False
        group, shown, count = plan.group(True, self.transcribing)
        parts: list[bytes | memoryview] = [group]
        lines = list(shown)
        for chunk, last in _bdat_chunks(plan.body(), self.options.chunk_size):
            header = b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"")
            if last:
                plan.end_of_data(unanswered=True)
            parts += (header, chunk)
            if self.transcribing:
                lines.append(header[:-2].decode())
            count += 1
        data = b"".join(parts)
        return _Flight(plan, count, len(data), after), data, tuple(lines)

    def _write(
        self, unsent: list[tuple[_Flight, bytes, tuple[str, ...]]], flights: deque[_Flight]
    ) -> Flow[Exception | None]:
        """Write the prepared transactions in one write; they are then in flight.

        Returns the error of a write that failed (the driver throws it in here),
        for the caller to raise once the flights have landed. How far such a
        write got is unknown: every transaction in it but the last may have
        left whole (their ends are then sent, unanswered); the last one's end
        is the write's last byte, so it did not.
        """
        if not unsent:
            return None
        data = unsent[0][1] if len(unsent) == 1 else b"".join(part[1] for part in unsent)
        lines = tuple(line for part in unsent for line in part[2])
        # With transactions in flight their replies may already be buffered:
        # they are not unsolicited (no_reply_pending only when none is).
        try:
            yield Send(data, lines, no_reply_pending=not unsent[0][0].after)
        except TransportError as exc:
            del unsent[-1]
            failed: Exception | None = exc
        else:
            failed = None
        for flight, _, _ in unsent:
            flight.plan.result.end_sent = True
            flights.append(flight)
        unsent.clear()
        return failed

    def _arrived(self, flight: _Flight) -> Flow[bool]:
        """Take the replies to ``flight`` that were already read (no wait); True when
        all of them are in, so that landing it will not wait."""
        missing = flight.count - len(flight.got)
        flight.got += yield from self._receive(missing, "MAIL", "data_end", arrived=True)
        return len(flight.got) == flight.count

    def _land(self, flight: _Flight, queued: deque[_Plan], open_before: bool) -> Flow[bool]:
        """Read and record one transaction's replies, in the order of its commands.

        A refused MAIL makes the RCPT and BDAT replies 503s that say nothing
        more; every RCPT refused makes the BDAT reply one too (the chunk went
        all the same, RFC 3030 §2). 503 to a MAIL written while an earlier
        transaction's end was in flight, after the RSET that ends any transaction
        left open: the server refuses such pipelining, and the transaction was not
        attempted; it is sent again. Returns whether this one may have left the
        server's transaction open (RFC 5321 §4.1.1.5: RSET needed).
        """
        plan = flight.plan
        # Waiting here may be waiting for an end of data to be processed.
        replies = flight.got
        if len(replies) < flight.count:
            replies += yield from self._receive(flight.count - len(replies), "MAIL", "data_end")
        replies = replies[1:]  # the RSET's: nothing depends on it
        head = 1 + len(plan.rcpts)
        if replies[0].code == 503 and any(_ok(r) for r in replies[1:]):
            # (After a refused RSET too: they joined a transaction left open, which
            # may have taken this content. Its result stays unanswered, not "not sent".)
            raise RemoteProtocolError(
                "the server refused a pipelined MAIL FROM (503) but took the "
                "commands that followed it; the transactions are out of step"
            )
        if flight.after and replies[0].code == 503:
            plan.result.end_sent = False  # not attempted: sent again
            self.needs_rset |= open_before  # (its RSET may have been refused as well)
            yield from self._refused_after_data(plan, replies)
            queued.append(plan)
            return open_before
        if self._evaluate(plan, replies[:head]):
            ends = replies[head:]
            refused = next((r for r in ends[:-1] if not _ok(r)), None)
            self._finish(plan, [refused or ends[-1]], True)
            left_open = refused is not None
        else:
            left_open = _ok(replies[0])
            self._fail_pending(plan, True)
        if left_open:
            self.needs_rset = True
        if plan.rest is not None:
            queued.append(plan.rest)
        return left_open

    def _alone(self, plan: _Plan, queued: deque[_Plan]) -> Flow[bool]:
        """One transaction with nothing else in flight: its commands, their replies,
        then its content (a message too large for the window). Returns whether
        it may have left the server's transaction open."""
        rset = self.needs_rset
        group, shown, count = plan.group(rset, self.transcribing)
        yield Send(group, shown, no_reply_pending=True)
        replies = yield from self._receive(count, "MAIL")
        if rset:
            replies = replies[1:]
        self.needs_rset = False
        if self._evaluate(plan, replies):
            data_replies, _ = yield from self._body(plan)
            self._finish(plan, data_replies, True)
        else:
            self.needs_rset = _ok(replies[0])
            self._fail_pending(plan, True)
        if plan.rest is not None:
            queued.append(plan.rest)
        return self.needs_rset

    def _lockstep(
        self, it: Iterator[tuple[Envelope, Content]], results: list[SendResult], keep: bool
    ) -> Flow[None]:
        plan = self._next_plan(it, results, keep)
        # Each command waits for its reply, so whatever the client does between a
        # reply and its next command, the server waits for: the next transaction
        # is planned while the server reads this one's end of data instead.
        following = _Following(
            lambda: self._next_plan(it, results, keep), results, quit_after=False, shown=False
        )
        try:
            while plan is not None:
                encoded: _Encoded | None = None
                if self.needs_rset:
                    yield from self._reset_before(plan)
                yield Send(plan.mail, self._shown(plan.mail), 0, 0, True)  # no_reply_pending
                replies = yield from self._receive(1, "MAIL")
                if _ok(replies[0]):
                    taken = False
                    for line in plan.rcpts:
                        yield Send(line, self._shown(line), 0, 0, True)  # no_reply_pending
                        replies += yield from self._receive(1, "RCPT")
                        taken = taken or _ok(replies[-1])
                    if taken and not plan.bdat:  # (every recipient refused: no DATA)
                        yield Send(b"DATA\r\n", ("DATA",), 0, 0, True)  # no_reply_pending
                        if plan.content.data is not None:  # (a stream is read as it goes)
                            encoded = _encoded(plan)  # while the server answers DATA
                        replies += yield from self._receive(1, "DATA")
                go = self._evaluate(plan, replies)
                following.expect(plan.rest, False)
                if go:
                    data_replies, _ = yield from self._body(plan, following, encoded)
                    self._finish(plan, data_replies, keep)
                else:
                    self.needs_rset = _ok(replies[0])
                    self._fail_pending(plan, keep)
                plan, failed = following.take()
                if failed is not None:
                    raise failed
                following.fresh = False  # (begun: its first command is written next)
        except BaseException:  # (a taken item not begun was not tried: see _Following)
            following.unlist()
            raise

    def _next_plan(
        self,
        it: Iterator[tuple[Envelope, Content]],
        results: list[SendResult],
        keep: bool,
        queued: deque[_Plan] | None = None,
    ) -> _Plan | None:
        """The next transaction: one ``queued`` (sent again, or a message's further
        one), else the next item's (its result appended to ``results``)."""
        if queued:
            return queued.popleft()
        for envelope, content in it:
            try:
                plan = self._plan(envelope, content)
            except InputError as exc:
                content.put_back()  # (refused before a byte of it left: not tried)
                if not keep:
                    raise
                results.append(SendResult(envelope.sender, error=exc))
                continue
            results.append(plan.result)
            return plan
        return None

    def _offer(self) -> _Offer:
        """What the current EHLO reply offers (a new one after STARTTLS, a reconnect)."""
        offer = self.offered
        if offer is None or offer.extensions is not self.extensions:
            offer = self.offered = _Offer(self.extensions)
        return offer

    def _plan(self, envelope: Envelope, content: Content) -> _Plan:
        offer = self._offer()
        before_end = content.before_end
        # MAIL's parameters that the client makes itself (a count, keywords) are
        # written as they are, with nothing in them to check: esmtp_params (its
        # checks cost more than the rest of the plan) is for the DSN requests,
        # which come from the caller's envelope.
        params = b""
        use_bdat = offer.chunking
        utf8 = envelope.needs_smtputf8 or content.smtputf8
        if utf8 and not offer.smtputf8:
            # Checked first: UTF-8 headers are 8-bit too, and no re-encoding of the
            # body (the 8BITMIME advice) would make them acceptable (RFC 6532 §3.4).
            raise ExtensionNotSupported(
                "the envelope or headers need SMTPUTF8, which the server does not offer"
            )
        if content.eight_bit and content.seven_bit is not None and not offer.eight_bit_ok:
            # RFC 6152 §3: converted only for a server that cannot take 8-bit data,
            # as an MTA does; a server with 8BITMIME gets the message unchanged.
            rewind = content.rewind
            content = content.seven_bit()
            content.rewind = rewind  # (the same item's: made for it alone)
        size = content.declared_size() if offer.size else None
        if size is not None:
            limit = offer.size_limit
            if limit is not None and size > limit:
                raise MessageTooLarge(size, limit)
            params += b" SIZE=%d" % size
        if content.eight_bit is not False and offer.binarymime:
            # RFC 3030 §3: with BDAT, BINARYMIME also covers NULs and lines over
            # 998 octets, which 8BITMIME does not; unknown content gets it too.
            params += b" BODY=BINARYMIME"
        elif content.eight_bit is not False and offer.eightbitmime:
            params += b" BODY=8BITMIME"
        elif content.eight_bit:
            # RFC 6152 §3: 8-bit data only to a server that offers 8BITMIME; a
            # message from smtpmail.compose is 7-bit clean, this one is the caller's.
            raise ExtensionNotSupported(
                "the message has 8-bit data and the server does not offer 8BITMIME "
                "(RFC 6152); re-encode it (quoted-printable or base64: convert_8bit=True, "
                "the command line's --convert-8bit) or use another server"
            )
        if utf8:
            params += b" SMTPUTF8"
        if envelope.requiretls:
            self._check_requiretls()
            params += b" REQUIRETLS"
        wants_dsn = envelope.ret or envelope.envid or envelope.notify or envelope.orcpt
        dsn = offer.dsn
        if wants_dsn and not dsn:
            log.warning("server does not offer DSN; delivery status requests dropped")
        requests: dict[str, str | None] = {}
        if dsn and envelope.ret:
            requests["RET"] = envelope.ret
        if dsn and envelope.envid:
            requests["ENVID"] = cmd.xtext(envelope.envid)
        if requests:
            params += cmd.esmtp_params(requests)
        mail = cmd.mail_from(envelope.sender_path, params)
        rcpts = []
        rcpt_requests = dsn and (envelope.notify or envelope.orcpt)
        for path in envelope.recipient_paths:
            if not rcpt_requests:
                rcpts.append(cmd.rcpt_to(path))
                continue
            rparams: dict[str, str | None] = {}
            if dsn and envelope.notify:
                rparams["NOTIFY"] = ",".join(envelope.notify)
            if dsn and envelope.orcpt and path.address.isascii():
                rparams["ORCPT"] = "rfc822;" + cmd.xtext(path.address)
            rcpts.append(cmd.rcpt_to(path, cmd.esmtp_params(rparams)))
        paths = list(envelope.recipient_paths)
        result = SendResult(envelope.sender)
        return _Plan(content, mail, rcpts, paths, use_bdat, result, None, before_end)

    def _check_requiretls(self) -> None:
        """RFC 8689 §4.2.1: REQUIRETLS only over verified TLS, to a server offering it."""
        if not self.tls_authenticated:
            raise ExtensionNotSupported(
                "REQUIRETLS needs TLS with a verified certificate (DANE or a trusted CA); "
                "this connection has none (RFC 8689 §4.2.1)",
                enhanced_status="5.7.30",
            )
        if "REQUIRETLS" not in self.extensions:
            raise ExtensionNotSupported(
                "the message requires TLS on every hop (REQUIRETLS), which the server "
                "does not offer (RFC 8689 §4.2.1)",
                enhanced_status="5.7.30",
            )

    def _evaluate(self, plan: _Plan, replies: list[Reply]) -> bool:
        """Record the MAIL/RCPT/DATA replies; True when the content should follow."""
        recipients = plan.result.recipients
        mail = replies[0]
        paths = plan.paths
        code = mail.code
        if code == 503:
            raise self._not_sent(plan, _out_of_step("MAIL FROM", mail))
        if not 200 <= code < 300:  # (_ok inline, as below: every message comes here)
            for path in paths:
                recipients[path.address] = RecipientResult(path.address, mail, False)
            plan.error = SenderRefused("MAIL FROM", mail)
            return False
        rcpt_replies = replies[1 : 1 + len(paths)]
        over: list[int] = []
        for i, reply in enumerate(rcpt_replies):  # (not zip: its keyword costs a dict)
            path = paths[i]
            code = reply.code
            if code == 503:
                raise _out_of_step("RCPT TO", reply)
            ok = 200 <= code < 300
            at_rcpt = True  # (passed by position: keywords cost a dict per call)
            recipients[path.address] = RecipientResult(path.address, reply, ok, at_rcpt)
            if ok:
                plan.accepted.append(path.address)
            elif plan.accepted and _too_many(reply):
                over.append(i)
        if not plan.accepted:
            refused = {p.address: r for p, r in zip(paths, rcpt_replies, strict=False)}
            plan.error = RecipientsRefused.of("RCPT TO", refused)
            return False
        if over:
            self._rest(plan, over)
        if not plan.bdat:
            data = replies[-1]
            if data.code == 503:
                raise _out_of_step("DATA", data)
            if data.code != 354:
                plan.error = DataRefused("DATA", data)
                return False
        return True

    def _rest(self, plan: _Plan, over: list[int]) -> None:
        """RFC 5321 §4.5.3.1.10: the recipients refused as too many go in a further
        transaction on this connection, with the same content. Only a 452 after an
        accepted RCPT counts: one to the first RCPT of a transaction is final, so
        every further transaction is smaller than the last and the chain ends."""
        if not plan.content.resendable:
            log.warning(
                "%d recipients over the server's limit left deferred: the message "
                "was a stream that cannot be sent again",
                len(over),
            )
            return
        plan.rest = _Plan(
            plan.content,
            plan.mail,
            [plan.rcpts[i] for i in over],
            [plan.paths[i] for i in over],
            plan.bdat,
            plan.result,
            plan.head,
            plan.before_end,
        )

    def _not_sent(self, plan: _Plan, error: Exception) -> Exception:
        """``plan``'s transaction was not attempted, for ``error`` (raised next): the
        message's verdict, unless it is a further transaction of a message some of
        whose recipients an earlier one delivered, which then decide it. Not
        tried, the message gets its file back (``Content.put_back``)."""
        if plan.head is plan:
            plan.result.error = error
            plan.content.put_back()
        else:
            self._conclude(plan, True)
        return error

    def _fail_pending(self, plan: _Plan, keep: bool) -> None:
        """A refused transaction: its recipients not yet refused share its fate."""
        error = plan.error
        assert error is not None
        reply = getattr(error, "reply", None)
        if isinstance(reply, Reply):
            for address in plan.accepted:
                _decided(plan.result.recipients, address, reply, False)
        self._conclude(plan, keep)

    def _finish(self, plan: _Plan, replies: list[Reply], keep: bool) -> None:
        """Record the reply (or, in LMTP, the replies) to the end of the data."""
        recipients = plan.result.recipients
        plan.reply = replies[-1]
        if self.options.lmtp:
            for address, reply in zip(plan.accepted, replies, strict=False):
                _decided(recipients, address, reply, _ok(reply))
            # One reply per recipient (RFC 2033 §4.2); the message's is chosen as
            # for one sent in several transactions (_conclude): the last that
            # delivered it, else the last refusal that may pass later, else the last.
            taken = [reply for reply in replies if _ok(reply)]
            if taken:
                plan.reply = taken[-1]
            else:
                retry = [reply for reply in replies if reply.is_transient]
                plan.reply = (retry or replies)[-1]
                plan.error = DataRefused("DATA", plan.reply, "message refused")
        else:
            reply = replies[-1]
            if reply.code == 503:
                raise _out_of_step("BDAT" if plan.bdat else "end of data", reply)
            ok = 200 <= reply.code < 300
            if not ok:
                plan.error = DataRefused("end of data", reply, "message refused")
            for address in plan.accepted:
                _decided(recipients, address, reply, ok)
        self._conclude(plan, keep)

    def _conclude(self, plan: _Plan, keep: bool) -> None:
        """A transaction is over; after the message's last, its result gets the
        verdict (and is complete): the transaction's own, or, for a message sent
        in several, none when some recipient was accepted, else the first's.

        Before a further transaction, ``end_sent`` is cleared: this one's end was
        answered, and until the next one's leaves nothing is unanswered (a cut
        then leaves the message not possibly delivered, its result incomplete).

        A message of one transaction whose end never left (its MAIL refused, or
        every RCPT) sent no byte of its data: its file goes back where it was
        given (``Content.put_back``), to be given again whole."""
        if plan.rest is not None:
            plan.result.end_sent = False
            return
        result = plan.result
        head = plan.head
        taken = [] if head is plan else [r.reply for r in result.recipients.values() if r.accepted]
        if taken:
            result.reply, result.error = taken[-1], None
        else:
            result.reply, result.error = head.reply, head.error
        if head is plan and not result.end_sent:
            plan.content.put_back()
        if result.error is not None and not keep:
            raise result.error

    def _body(
        self,
        plan: _Plan,
        following: _Following | None = None,
        encoded: _Encoded | None = None,
    ) -> Flow[tuple[list[Reply], bool]]:
        """Stream the content; the tail ``following`` gives (the next group), asked
        for once the rest of the content is written, shares the last write.
        When it shares none, the next transaction is taken once the end of the
        data has left, before its reply is awaited: planning it (reading and
        scanning the message) is then done while the server reads the data,
        not while the server waits for the next command.

        ``encoded``: the content as :func:`_encoded` made it while DATA's reply was
        awaited (else it is made here).

        Returns the replies to the end of the data and whether the tail was sent.
        """
        n_final = len(plan.accepted) if self.options.lmtp else 1
        if plan.bdat:
            return (yield from self._bdat(plan, plan.body(), following, n_final))
        encoder, pieces = encoded or _encoded(plan)
        previous: bytes | memoryview = b""
        broke: TransportError | None = None
        try:
            for piece in pieces:
                if not piece:
                    continue
                if previous:
                    yield Send(previous, (), len(previous))  # content_octets
                previous = piece
            plan.end_of_data()
            ending = encoder.end()
            if len(previous) > _JOIN_BELOW:
                # A big last piece goes alone: joining it to the ending would copy it.
                yield Send(previous, (), len(previous))  # content_octets
                previous = b""
            tail, tail_shown = _tail(following)
            last = b"".join((previous, ending, tail))  # (one copy of a view)
            content_octets = len(previous) + len(ending) - 3
            shown = (".", *tail_shown) if self.transcribing else _NOTHING
            yield Send(last, shown, content_octets)  # (no keyword: no dict)
        except TransportError as exc:  # a write failed (the driver throws it in where it wrote)
            broke = exc
        if broke is not None:  # (read outside the handler: see _failed_write)
            return (yield from self._failed_write(broke, 1, "end of data", n_final))
        _end_left(plan, following)
        return (yield from self._end_replies(plan, n_final, "end of data")), bool(tail)

    def _end_replies(self, plan: _Plan, count: int, label: str) -> Flow[list[Reply]]:
        """The ``count`` replies that end the data (in LMTP one per accepted
        recipient, RFC 2033 §4.2). In SMTP, the receiving flow itself (no
        generator of its own: every message waits here)."""
        if not self.options.lmtp:
            return self._receive(count, label, "data_end")
        return self._lmtp_end_replies(plan, count, label)

    def _lmtp_end_replies(self, plan: _Plan, count: int, label: str) -> Flow[list[Reply]]:
        """LMTP: a 421 or a lost connection may cut the replies after the data
        short, yet each reply before it decided its recipient (delivered, or
        refused): they are recorded before the error is raised, so that no
        recipient the server took is sent the message again."""
        try:
            return (yield from self._receive(count, label, "data_end", per_reply=True))
        except (TransportError, ServiceClosing) as exc:
            for address, reply in zip(plan.accepted, exc._replies_read, strict=False):
                _decided(plan.result.recipients, address, reply, _ok(reply))
            raise

    def _failed_write(
        self, exc: TransportError, count: int, label: str, n_final: int
    ) -> Flow[tuple[list[Reply], bool]]:
        """A write of the message's data failed with ``count`` replies due.

        A server that refuses the message before its end (too large, say) may
        say so and leave while the data still streams: the first refusal among
        the replies it sent before it left is the message's fate (RFC 3030 §2:
        it discards the chunks that follow one), not the broken connection.
        Only the replies already received are read; with no refusal among
        them, ``exc`` stands.

        Called outside the handler that caught ``exc``, as is any wait in the
        compiled modules: there (mypyc), a generator suspended in a handler
        leaves its error as the thread's current exception, and every error
        raised later in that thread, anywhere, gets it as its context.
        """
        for _ in range(count):
            try:
                (reply,) = yield from self._receive(1, label, "data_block")
            except TransportError:  # (none more had arrived)
                break
            if not _ok(reply):
                return [reply] * n_final, False
        raise exc

    def _bdat(
        self,
        plan: _Plan,
        content: Content,
        following: _Following | None,
        n_final: int,
    ) -> Flow[tuple[list[Reply], bool]]:
        """CHUNKING (RFC 3030): BDAT chunks, pipelined within a window when allowed.

        After a refused chunk no further chunk is sent (RFC 3030 §2), the
        replies still in flight are read, and the transaction needs RSET. In
        LMTP, ``BDAT ... LAST`` waits for the earlier chunks' replies: how many
        replies it gets depends on them.
        """
        window = self.options.bdat_window if "PIPELINING" in self.extensions else 1
        outstanding = 0
        failed: Reply | None = None
        for chunk, last in _bdat_chunks(content, self.options.chunk_size):
            header = b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"")
            shown = (header[:-2].decode(),) if self.transcribing else _NOTHING
            if last and outstanding and self.options.lmtp:
                # LMTP answers BDAT LAST once per accepted recipient (RFC 2033 §4.2)
                # only in a transaction still whole: after a refused chunk it gets one
                # reply (503), and a client counting one per recipient would wait for
                # replies that never come. The earlier chunks' replies decide first.
                replies = yield from self._receive(outstanding, "BDAT", "data_block")
                outstanding = 0
                failed = next((r for r in replies if not _ok(r)), None)
                if failed is not None:
                    break
            if last:
                plan.end_of_data()
                # The next transaction rides along only when no earlier chunk can
                # still fail: after a refused chunk the server wants RSET first.
                tail_from = None if outstanding else following
                broke: TransportError | None = None
                try:
                    if len(chunk) > _JOIN_BELOW:
                        # Written apart rather than copied into one buffer.
                        yield Send(header, shown)
                        yield Send(chunk, content_octets=len(chunk))
                        # The end has left, whatever becomes of the next commands.
                        plan.result.end_sent = True
                        tail, tail_shown = _tail(tail_from)
                        if tail:
                            yield Send(tail, tail_shown)
                    else:
                        tail, tail_shown = _tail(tail_from)
                        yield Send(
                            header + chunk + tail,
                            shown + tail_shown,
                            content_octets=len(chunk),
                            command_octets=len(header),
                        )
                except TransportError as exc:  # a write failed
                    broke = exc
                if broke is not None:  # (read outside the handler: see _failed_write)
                    return (yield from self._failed_write(broke, outstanding, "BDAT", n_final))
                _end_left(plan, following)
                if outstanding:  # (not in LMTP: its earlier chunks were answered above)
                    replies = yield from self._receive(outstanding + n_final, "BDAT", "data_end")
                else:
                    replies = yield from self._end_replies(plan, n_final, "BDAT")
                failed = next((r for r in replies[:outstanding] if not _ok(r)), None)
                if failed is not None:
                    self.needs_rset = True
                    return [failed] * n_final, False
                return replies[outstanding:], bool(tail)
            broke = None
            try:
                if len(chunk) > _JOIN_BELOW:
                    yield Send(header, shown)
                    yield Send(chunk, content_octets=len(chunk))
                else:
                    yield Send(
                        header + chunk,
                        shown,
                        content_octets=len(chunk),
                        command_octets=len(header),
                    )
            except TransportError as exc:
                broke = exc
            if broke is not None:  # (read outside the handler: see _failed_write)
                return (yield from self._failed_write(broke, outstanding, "BDAT", n_final))
            outstanding += 1
            if outstanding >= window:
                (reply,) = yield from self._receive(1, "BDAT", "data_block")
                outstanding -= 1
                if not _ok(reply):
                    failed = reply
                    break
        assert failed is not None
        if outstanding:
            yield from self._receive(outstanding, "BDAT", "data_block")
        self.needs_rset = True
        return [failed] * n_final, False


def _end_left(plan: _Plan, following: _Following | None) -> None:
    """``plan``'s end of data has left, its reply not yet read. The transaction
    that follows, when no tail took it, is taken now: planned (its message
    read and scanned) while the server reads this data, rather than while
    it waits for the next command (:meth:`Transactions._body`)."""
    plan.result.end_sent = True
    if following is not None and not following.taken:
        following.take()


def _encoded(plan: _Plan) -> _Encoded:
    """``plan``'s content as DATA sends it: the pieces, and the encoder that ends them.

    A message held in memory that fits one piece (most do) is encoded here at
    once, so the lock-step flow calls this before it waits for DATA's 354: the
    server then gets the content as soon as the 354 is read, instead of after
    a scan of it (a third of what the client did between reading that reply
    and writing the content, issue 19). Larger and streamed messages are
    encoded as they go.
    """
    content = plan.body()
    encoder = DataEncoder()
    if content.data is not None:
        return encoder, encode_buffer(content.data, encoder, form=content.form or CHECK)
    # map, not a generator expression: mypyc (the compiled build) makes those lists,
    # which would hold a streamed message whole.
    return encoder, map(encoder.feed, content.chunks)


def _bdat_chunks(content: Content, size: int) -> Iterator[tuple[bytes | memoryview, bool]]:
    """Normalised (not dot-stuffed) chunks of about ``size`` octets; the last flagged.

    A message held in memory goes in line-aligned pieces, views of it where
    nothing needs repair; streamed content is gathered to at least ``size``.
    """
    encoder = DataEncoder(dot_stuff=False)
    if content.data is not None:
        previous: bytes | memoryview = b""
        pieces = encode_buffer(content.data, encoder, (size,), form=content.form or CHECK)
        for piece in pieces:
            if previous:
                yield previous, False
            previous = piece
        ending = encoder.end()
        yield (bytes(previous) + ending if ending else previous), True
        return
    pending = bytearray()
    for chunk in content.chunks:
        pending += encoder.feed(chunk)
        if len(pending) >= size:
            yield bytes(pending), False
            pending.clear()
    pending += encoder.end()
    yield bytes(pending), True


def _closed(results: list[SendResult], closing: ServiceClosing) -> None:
    """A 421 ended the connection (RFC 5321 §3.8) with ``results`` not all decided.

    Replies come in the order of the commands (RFC 2920 §3.1), so every reply
    before the 421 was read and recorded: a transaction still undecided had its
    commands from the one the 421 answers on, none of which the server took.
    Its message was not delivered by it (not "possibly delivered", whether its
    end of data had left or not): the 421 is its verdict, transient, and its
    recipients accepted at RCPT share it. Recipients an earlier transaction of
    the message delivered (those over a server's limit go in several) decide
    it, as when a transaction is refused (:meth:`Transactions._conclude`)."""
    reply = closing.reply
    for result in results:
        if result.reply is not None or result.error is not None:
            continue
        recipients = result.recipients
        for address, rr in list(recipients.items()):
            if rr.accepted and rr.at_rcpt:
                _decided(recipients, address, reply, False)
        taken = [r.reply for r in recipients.values() if r.accepted]
        if taken:
            result.reply = taken[-1]
        else:
            result.error = closing


def _decided(
    recipients: dict[str, RecipientResult], address: str, reply: Reply, accepted: bool
) -> None:
    """A reply after RCPT decides an accepted recipient; its RCPT reply is kept."""
    rcpt_reply = recipients[address].rcpt_reply if address in recipients else None
    at_rcpt = False  # (passed by position: keywords cost a dict per call)
    recipients[address] = RecipientResult(address, reply, accepted, at_rcpt, rcpt_reply)
