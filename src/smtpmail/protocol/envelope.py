"""The SMTP envelope and the outcome of a mail transaction (RFC 5321 §2.3.1, §3.3).

The envelope is apart from the message headers: the reverse-path (where
bounces go, empty for the null path), the forward-paths (who receives it) and
the DSN requests (RFC 3461) that travel with them. It validates on
construction, so a bad address is refused before any connection is made.
"""

from __future__ import annotations

from collections.abc import Iterable

from smtpmail.errors import InvalidAddress, InvalidArgument, rcpt_refusal_may_pass_later
from smtpmail.protocol.commands import Path, check_text, parse_path
from smtpmail.protocol.reply import Reply

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

__all__ = ["Envelope", "RecipientResult", "SendResult"]

_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


class Envelope:
    """A validated reverse-path, forward-paths and DSN requests.

    ``notify`` is a collection of ``"SUCCESS"``, ``"FAILURE"``, ``"DELAY"``, or
    ``["NEVER"]``; ``ret`` is ``"FULL"`` or ``"HDRS"``; ``envid`` identifies
    the message in DSNs (printable US-ASCII, at most 100 characters: RFC 3461
    §4.4); ``orcpt`` records each forward-path as the original recipient. DSN
    requests are sent only to servers that offer DSN.
    ``requiretls`` (RFC 8689) asks every hop for verified TLS: MAIL FROM carries
    REQUIRETLS, and a connection without it fails the message (5.7.30).
    """

    __slots__ = (
        "envid",
        "needs_smtputf8",
        "notify",
        "orcpt",
        "recipient_paths",
        "requiretls",
        "ret",
        "sender_path",
    )

    def __init__(
        self,
        sender: str,
        recipients: Iterable[str] | str,
        *,
        notify: Iterable[str] | None = None,
        ret: str | None = None,
        envid: str | None = None,
        orcpt: bool = False,
        requiretls: bool = False,
    ) -> None:
        if isinstance(recipients, str):
            recipients = [recipients]
        self.sender_path: Path = parse_path(sender, "sender", null_ok=True)
        paths: list[Path] = []
        seen: set[str] = set()
        for rcpt in recipients:
            path = parse_path(rcpt, "recipient")
            if path.address.lower() not in seen:  # one RCPT per recipient
                seen.add(path.address.lower())
                paths.append(path)
        if not paths:
            raise InvalidAddress("the envelope has no recipients")
        self.recipient_paths: tuple[Path, ...] = tuple(paths)
        #: A path needs SMTPUTF8 (RFC 6531: a non-ASCII local part).
        self.needs_smtputf8 = self.sender_path.needs_smtputf8 or any(
            p.needs_smtputf8 for p in paths
        )
        self.notify: tuple[str, ...] | None = None
        if notify is not None:
            values = tuple(n.strip().upper() for n in notify)
            if values != ("NEVER",) and not (values and set(values) <= _NOTIFY):
                raise InvalidArgument(
                    f"NOTIFY must be NEVER or a mix of SUCCESS, FAILURE, DELAY, not {values}"
                )
            self.notify = values
        if ret is not None and ret.upper() not in ("FULL", "HDRS"):
            raise InvalidArgument(f"RET must be FULL or HDRS, not {ret!r}")
        self.ret = ret.upper() if ret else None
        if envid is not None:
            check_text(envid, "ENVID")
            if not envid.isascii():
                # RFC 3461 §4.4: printable US-ASCII before xtext encoding; a
                # server decodes it and refuses the rest (Postfix: 501 5.5.4).
                raise InvalidArgument(f"ENVID {envid!r} is not printable US-ASCII")
            if len(envid) > 100:  # RFC 3461 §4.4
                raise InvalidArgument("ENVID longer than 100 octets")
        self.envid = envid
        self.orcpt = orcpt
        self.requiretls = requiretls

    def with_recipients(
        self, recipients: Iterable[str], *, requiretls: bool | None = None
    ) -> Envelope:
        """The same sender and requests (DSN, REQUIRETLS) for other recipients."""
        return Envelope(
            self.sender,
            recipients,
            notify=self.notify,
            ret=self.ret,
            envid=self.envid,
            orcpt=self.orcpt,
            requiretls=self.requiretls if requiretls is None else requiretls,
        )

    @property
    def sender(self) -> str:
        return self.sender_path.address

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(p.address for p in self.recipient_paths)

    def __repr__(self) -> str:
        return f"Envelope(sender={self.sender!r}, recipients={self.recipients!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Envelope)
            and self.sender == other.sender
            and self.recipients == other.recipients
        )

    __hash__ = None  # type: ignore[assignment]


class RecipientResult:
    """What became of one forward-path (immutable).

    ``reply`` is the reply that decided it: the RCPT reply when the recipient
    was refused, else the reply to the end of the data (per recipient in LMTP).
    ``rcpt_reply`` is the reply to its RCPT TO (RFC 5321 §4.1.1.3), kept when a
    later reply decided (None when the transaction ended before RCPT).
    Hand-written rather than a frozen dataclass: importing dataclasses (and
    inspect, ast, dis...) costs a one-message CLI send a sixth of its start-up.
    The fields are kept in one tuple, stored once: two results are made per
    recipient of every message, and each field stored apart cost an
    ``object.__setattr__`` (the class refuses plain assignment), half of the
    work of making one.
    """

    __slots__ = ("_fields",)

    #: (recipient, reply, accepted, at_rcpt, rcpt_reply)
    _fields: tuple[str, Reply, bool, bool, Reply | None]

    def __init__(
        self,
        recipient: str,
        reply: Reply,
        accepted: bool,
        at_rcpt: bool = False,
        rcpt_reply: Reply | None = None,
    ) -> None:
        # object.__setattr__: instances are frozen once built (see __setattr__).
        fields = (recipient, reply, accepted, at_rcpt, reply if at_rcpt else rcpt_reply)
        object.__setattr__(self, "_fields", fields)

    @property
    def recipient(self) -> str:
        return self._fields[0]

    @property
    def reply(self) -> Reply:
        return self._fields[1]

    @property
    def accepted(self) -> bool:
        return self._fields[2]

    @property
    def at_rcpt(self) -> bool:
        """True when ``reply`` answered RCPT TO (not MAIL, DATA or the end of data)."""
        return self._fields[3]

    @property
    def rcpt_reply(self) -> Reply | None:
        return self._fields[4]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RecipientResult is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RecipientResult is immutable: cannot delete {name!r}")

    def __reduce__(
        self,
    ) -> tuple[type[RecipientResult], tuple[str, Reply, bool, bool, Reply | None]]:
        # copy and pickle rebuild through __init__ (setattr is refused).
        return (RecipientResult, self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, RecipientResult)
        return self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return (
            f"RecipientResult(recipient={self.recipient!r}, reply={self.reply!r}, "
            f"accepted={self.accepted!r}, at_rcpt={self.at_rcpt!r}, "
            f"rcpt_reply={self.rcpt_reply!r})"
        )

    @property
    def is_transient(self) -> bool:
        if self.accepted:
            return False
        if self.at_rcpt:
            return rcpt_refusal_may_pass_later(self.reply)
        return self.reply.is_transient

    @property
    def is_permanent(self) -> bool:
        return not self.accepted and not self.is_transient


class SendResult:
    """The outcome of one mail transaction.

    ``reply`` is the reply to the end of the data that delivered the message.
    Where there are several (LMTP answers once per recipient, RFC 2033 §4.2;
    recipients over a server's limit go in several transactions, RFC 5321
    §4.5.3.1.10), it is the last one that delivered it, in the order of the
    recipients; each recipient's own is in ``recipients``. When none did, it
    is the refusal of the data, also ``error``'s (in LMTP, one that may pass
    later when there is one), or None when the transaction ended before the
    data. A refusal in ``reply`` means nothing was delivered.

    ``error`` is set when the transaction as a whole failed (sender refused,
    every recipient refused, data refused) or was not attempted; :meth:`Client.send`
    raises it, :meth:`Client.send_many` keeps it here. A 421 (RFC 5321 §3.8)
    that came before the reply to the end of data is the error of every
    transaction it cut short, its recipients accepted at RCPT included: replies
    come in order, so the server took nothing from the command it answered on,
    and the message was not delivered (its ``end_sent`` may still be set).

    ``end_sent``: the end of the data (the final dot, or ``BDAT ... LAST``)
    was written (for a message sent in several transactions, recipients over
    the server's limit: the end of the one under way; those before it were
    answered, and their recipients' results say how). While ``reply`` and
    ``error`` are None (the connection was lost, with no 421, before the
    reply to it arrived) the server may have taken the message (RFC 5321 §4.1.1.4; with
    pipelined BDAT transactions, RFC 3030 §4.2, several may be in that state
    at once).
    """

    __slots__ = ("end_sent", "error", "recipients", "reply", "sender", "tls")

    sender: str
    recipients: dict[str, RecipientResult]
    reply: Reply | None
    error: Exception | None
    #: How the connection was protected: a :class:`smtpmail.TLSInfo` (version,
    #: cipher, certificate) or None in clear text. Set by the client.
    tls: Any
    end_sent: bool

    def __init__(
        self,
        sender: str,
        recipients: dict[str, RecipientResult] | None = None,
        reply: Reply | None = None,
        error: Exception | None = None,
        tls: Any = None,
    ) -> None:
        self.sender = sender
        self.recipients = {} if recipients is None else recipients
        self.reply = reply
        self.error = error
        self.tls = tls
        self.end_sent = False

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, SendResult)
        return (self.sender, self.recipients, self.reply, self.error, self.tls) == (
            other.sender,
            other.recipients,
            other.reply,
            other.error,
            other.tls,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    @property
    def ok(self) -> bool:
        """True when every recipient was accepted and the message was taken.

        Taken means the end of the data got its reply: a transaction cut short
        before it (a 421, RFC 5321 §3.8, or a lost connection; the error's
        ``results`` hold its result) is not ok, whatever its RCPT replies said.
        """
        return (
            self.error is None
            and self.reply is not None
            and all(r.accepted for r in self.recipients.values())
        )

    @property
    def accepted(self) -> list[str]:
        return [a for a, r in self.recipients.items() if r.accepted]

    @property
    def refused(self) -> dict[str, Reply]:
        return {a: r.reply for a, r in self.recipients.items() if not r.accepted}

    def raise_for_error(self) -> SendResult:
        if self.error is not None:
            raise self.error
        return self

    def __repr__(self) -> str:
        state = (
            "ok" if self.ok
            else f"error={self.error!r}" if self.error
            else "partial" if self.reply is not None
            else "unanswered"
        )  # fmt: skip
        return f"<SendResult {state} accepted={self.accepted} refused={list(self.refused)}>"
