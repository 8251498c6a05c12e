"""The SMTP client session as sans-IO flows: set-up, STARTTLS, AUTH (RFC 5321, 3207, 4954).

Each operation (greeting, EHLO, STARTTLS, AUTH, NOOP, QUIT, a batch of mail
transactions...) is a generator that yields :class:`Send` and :class:`Receive`
actions and is sent back the replies. It never touches a socket: the blocking
client and the asyncio client drive the very same flows and differ only in how
they wait for bytes, and tests can drive them with plain lists. The mail
transactions themselves live in :mod:`smtpmail.protocol.transaction`.

STARTTLS (RFC 3207) is a flow that sends the command alone and, on 220,
yields a :class:`StartTLS` action the transport carries out; AUTH (RFC 4954)
drives a SASL mechanism from :mod:`smtpmail.protocol.sasl`. From the start
of AUTH to the end of the connection the session redacts every form of the
credentials from every reply it reads (a server may echo the user name in a
535 or a 421, or the password in any later reply), so the transcript, the
logs, the results and the errors never show them.
"""

from __future__ import annotations

from smtpmail._log import Logger
from smtpmail.errors import (
    AuthenticationError,
    AuthenticationRefused,
    GreetingRefused,
    RemoteProtocolError,
    ReplyError,
    ServiceClosing,
)
from smtpmail.protocol import commands as cmd
from smtpmail.protocol.actions import Flow, Options, Receive, Send, StartTLS, TimeoutKind
from smtpmail.protocol.extensions import Extensions
from smtpmail.protocol.guard import one_at_a_time
from smtpmail.protocol.reply import Reply
from smtpmail.protocol.transaction import Transactions

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from smtpmail.protocol.redaction import Secrets
    from smtpmail.protocol.sasl import Mechanism

# smtpmail.protocol.sasl is imported by the AUTH code below, not here: a session
# that never authenticates (a local relay, the CLI's quick send) does not load it.

__all__ = ["Session"]

log = Logger("smtpmail.protocol")  # logging itself is imported when needed (_log)


class Session(Transactions):
    """State of one SMTP connection and the flows that advance it."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.extensions = Extensions()
        self.offered = None
        self.greeting: Reply | None = None
        self.esmtp = False
        # Declared once, in Transactions: mypyc reports an attribute declared again in a
        # subclass twice to the cycle collector (tests/protocol/test_session_gc.py).
        self.helo_reply = None
        self.needs_rset = False
        #: The server answered 503 to a MAIL sent in one write with the end of the
        #: previous message's data (RFC 2920 §3.1 allows that; some servers refuse
        #: it since the 2023 SMTP smuggling advisories). From then on each
        #: transaction waits for the reply to the previous message's data; clients
        #: carry this over to their next connection (``Options.pipeline_messages``).
        self.refuses_pipelined_mail = False
        #: QUIT went in one write with the last end of data (``transactions``'
        #: ``then_quit``): its reply is the next one, and no command may follow.
        self.quit_sent = False
        #: TLS is up with a verified certificate (CA, DANE or a pin): the transport
        #: says so after the handshake; REQUIRETLS needs it (RFC 8689 §4.1).
        self.tls_authenticated = False
        #: Whether the mail transactions' Send actions carry their command lines
        #: for a transcript (``transcript_lines``). A client turns it off for an
        #: operation nobody looks at (no transcript hook, no debug logging):
        #: decoding every message's commands costs 1 to 2% of its work.
        self.transcribing = True
        #: Every form of the credentials, once AUTH has started: redacted from
        #: every reply read from then on (see :meth:`_receive`).
        self.secrets: Secrets | None = None
        #: The Receive actions made since AUTH began, by what they wait for (see
        #: _receive; those made before serve every session: _WAITS).
        self._waits: dict[tuple[int, str, str, bool, bool, bool], Receive] = {}

    # -- connection set-up ---------------------------------------------------

    @one_at_a_time
    def greet(self) -> Flow[Reply]:
        """Read the server's 220 greeting (RFC 5321 §4.3.1)."""
        (reply,) = yield from self._receive(1, "greeting", "greeting")
        if reply.code != 220:
            raise GreetingRefused("greeting", reply, "server refused the connection")
        self.greeting = reply
        return reply

    @one_at_a_time
    def hello(self, name: str) -> Flow[Reply]:
        """EHLO (LHLO for LMTP), falling back to HELO when EHLO is refused."""
        name = cmd.ehlo_name(name)
        verb = "LHLO" if self.options.lmtp else "EHLO"
        reply = yield from self.command(f"{verb} {name}", verb, check=False)
        if reply.code // 100 == 2:
            self.esmtp = True
            self.extensions = Extensions.from_ehlo(reply, self.options.disabled())
        elif reply.code >= 500 and not self.options.lmtp:
            log.info("EHLO refused (%s); falling back to HELO", reply.code)
            reply = yield from self.command(f"HELO {name}", "HELO", check=False)
            if reply.code // 100 != 2:
                raise GreetingRefused("HELO", reply)
            self.esmtp = False
            self.extensions = Extensions()
        else:
            raise GreetingRefused(verb, reply)
        self.helo_reply = reply
        self.needs_rset = False
        return reply

    def forget(self) -> None:
        """Forget what the server said about itself (after STARTTLS, RFC 3207 §4.2)."""
        self.extensions = Extensions()
        self.esmtp = False
        self.helo_reply = None

    # -- STARTTLS and AUTH -----------------------------------------------------

    @one_at_a_time
    def starttls(self) -> Flow[Reply]:
        """STARTTLS alone (nothing pipelined after it); on 220 the handshake, then
        everything learned before TLS is forgotten: say EHLO again. Any other
        reply is returned for the caller's policy to judge."""
        reply = yield from self.command("STARTTLS", "STARTTLS", check=False)
        if reply.code == 220:
            yield StartTLS()
            self.forget()
        return reply

    @one_at_a_time
    def authenticate(self, mechanism: Mechanism) -> Flow[Reply]:
        """AUTH with ``mechanism`` (RFC 4954 §4); returns the 235 reply.

        Raises :class:`~smtpmail.errors.AuthenticationRefused` when the server
        refuses (its reply redacted), :class:`~smtpmail.errors.AuthenticationError` when
        the exchange goes wrong (a looping or malformed challenge).
        """
        import base64  # only AUTH uses it: a plain send starts faster without

        from smtpmail.protocol.redaction import REDACTED

        # The mechanism adds the forms it sends as it goes; the session keeps
        # them (and any from an earlier AUTH) for the rest of the connection.
        if self.secrets is not None:
            mechanism.secrets.update(self.secrets)
        self.secrets = mechanism.secrets
        flow = mechanism.flow()
        initial = next(flow)
        name = mechanism.name
        line = f"AUTH {name}"
        shown = line
        if initial is not None:
            blob = base64.b64encode(initial).decode("ascii") or "="
            # RFC 4954 §4: the AUTH line may be 12288 octets; longer, wait for the 334.
            if len(line) + len(blob) + 3 <= MAX_AUTH_LINE:
                line, shown = f"{line} {blob}", f"{shown} {REDACTED}"
                initial = None
        yield Send(_auth_line(line), (shown,), no_reply_pending=True)
        rounds = 0
        public = mechanism.public_challenges
        secrets = self.secrets
        while True:
            # A challenge is shown while the exchange is not complete: one after
            # the last response (a server echoing it?) is hidden whole.
            secrets.challenges_shown = public and not mechanism.complete
            try:
                (reply,) = yield from self._receive(1, "AUTH", auth=True)
            finally:
                secrets.challenges_shown = False
            if reply.code != 334:
                break
            rounds += 1
            if rounds > MAX_AUTH_ROUNDS:
                yield from self._cancel_auth()
                raise AuthenticationError(
                    f"the server sent more than {MAX_AUTH_ROUNDS} AUTH challenges"
                )
            response = initial
            initial = None
            if response is None:
                # (No wait in a handler: see Transactions._failed_write.)
                try:
                    challenge = base64.b64decode(reply.lines[0].strip(), validate=True)
                except ValueError:
                    challenge = None
                if challenge is None:
                    yield from self._cancel_auth()
                    raise RemoteProtocolError("AUTH challenge is not valid base64")
                refused: AuthenticationError | None = None
                try:
                    response = flow.send(challenge)
                except StopIteration:
                    response = None
                except AuthenticationError as exc:
                    refused = exc
                if refused is not None:
                    yield from self._cancel_auth()
                    raise refused
                if response is None:
                    yield from self._cancel_auth()
                    raise AuthenticationError(
                        f"the server sent an unexpected challenge during AUTH {name}"
                    )
            data = base64.b64encode(response)
            yield Send(data + b"\r\n", (REDACTED,))
        flow.close()
        if reply.code != 235:
            raise AuthenticationRefused("AUTH", reply, _auth_failure(name, reply))
        if not mechanism.complete:
            raise AuthenticationError(
                f"the server accepted AUTH {name} before the exchange was complete"
            )
        return reply

    def _cancel_auth(self) -> Flow[None]:
        """``*`` ends an exchange the client cannot go on with (RFC 4954 §4)."""
        yield Send(b"*\r\n", ("*",))
        yield from self._receive(1, "AUTH", auth=True)

    # -- replies -------------------------------------------------------------

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
        """Read ``count`` replies (with ``arrived``: those of them already read, with
        no wait). Once AUTH has started, each is kept as it may be shown (the
        credentials redacted), so the results and errors built from it never hold
        them; only a 334 challenge reaches the mechanism as sent.

        A 421 raises :class:`ServiceClosing`. With ``per_reply`` (each reply
        decides on its own: LMTP's per recipient) it carries the replies read
        before it, as a lost connection's error does (``_replies_read``): the
        caller records what they decided."""
        secrets = self.secrets
        # Every message waits for the same few things (its commands' replies, its
        # end of data's): each Receive is made once and yielded again, as a
        # class's construction costs more than the dictionary's look-up. Nothing
        # changes one once made: those without credentials serve every session
        # (a connection per message makes the same ones each time).
        key = (count, label, timeout, auth, arrived, per_reply)
        waits = _WAITS if secrets is None else self._waits
        action = waits.get(key)
        if action is None or action.secrets is not secrets:
            if len(waits) >= _WAITS_KEPT:
                waits.clear()
            # (positional: keywords make a call build a dict)
            action = Receive(count, label, timeout, secrets, auth, arrived, per_reply)
            waits[key] = action
        replies = yield action
        assert replies is not None and (
            len(replies) == count or (arrived and len(replies) < count) or _closing(replies)
        )
        if secrets is not None:
            replies = [r if auth and r.code == 334 else action.shown(r) for r in replies]
        for reply in replies:
            # 421 answers whatever was asked: the server is closing (RFC 5321 §3.8).
            # The transports stop reading at the first 421 (the list ends with it);
            # a driver that hands over a whole batch gets the same error here.
            if reply.code == 421:
                closing = ServiceClosing(label, reply)
                if per_reply:
                    closing._replies_read = tuple(replies[: replies.index(reply)])
                raise closing
        return replies

    # -- simple commands -----------------------------------------------------

    @one_at_a_time
    def command(
        self, line: str, label: str, *, check: bool = True, shown: str | None = None
    ) -> Flow[Reply]:
        """Send one command and return its reply; ``check`` raises on 4xx/5xx."""
        data = cmd.command(*line.split(" ", 1)) if " " in line else cmd.command(line)
        yield Send(data, (shown or line,), no_reply_pending=True)
        (reply,) = yield from self._receive(1, label)
        if check and reply.code >= 400:
            raise ReplyError(label, reply)
        return reply

    @one_at_a_time
    def noop(self) -> Flow[Reply]:
        return (yield from self.command("NOOP", "NOOP"))

    @one_at_a_time
    def rset(self) -> Flow[Reply]:
        return (yield from self._rset())

    @one_at_a_time
    def vrfy(self, address: str) -> Flow[Reply]:
        return (yield from self.command(f"VRFY {address}", "VRFY", check=False))

    @one_at_a_time
    def quit(self) -> Flow[Reply]:
        if self.quit_sent:  # (pipelined with the end of data: only its reply is due)
            (reply,) = yield from self._receive(1, "QUIT")
            return reply
        self.quit_sent = True
        return (yield from self.command("QUIT", "QUIT", check=False))


def _closing(replies: list[Reply]) -> bool:
    """Do the replies end with a 421 (fewer than asked for: nothing follows it)?"""
    return bool(replies) and replies[-1].code == 421


#: How many kinds of Receive a session keeps (see Session._receive).
_WAITS_KEPT = 64
#: The Receive actions without credentials, for every session (see Session._receive).
_WAITS: dict[tuple[int, str, str, bool, bool, bool], Receive] = {}

#: RFC 4954 §4: the longest AUTH command line, CRLF included.
MAX_AUTH_LINE = 12288
#: Challenges answered before the exchange is abandoned (a server looping 334).
MAX_AUTH_ROUNDS = 10


def _auth_line(line: str) -> bytes:
    # Mechanism names come from our own table; the initial response is base64.
    return line.encode("ascii") + b"\r\n"


def _auth_failure(name: str, reply: Reply) -> str:
    reasons = {
        535: "the server refused the credentials",
        534: "the server wants a stronger mechanism",
        538: "the server requires encryption for this mechanism",
        454: "temporary authentication failure",
        504: "the server does not support this mechanism",
        530: "the server requires authentication",
    }
    return f"AUTH {name}: {reasons.get(reply.code, 'authentication refused')}"
