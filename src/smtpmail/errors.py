"""The whole exception tree of smtpmail.

Every error answers ``is_transient`` (trying again later may succeed) and
``is_permanent`` (it will not), so callers never parse reply codes::

    SMTPError
    ├── InputError (also ValueError)          bad input, raised before any byte is sent
    │   ├── InvalidAddress                    a reverse-path or forward-path that does not parse
    │   ├── InvalidArgument                   CR, LF, NUL, other controls or an over-long value
    │   ├── MessageTooLarge                   over the size the server declared (SIZE)
    │   └── ExtensionNotSupported             SMTPUTF8, 8BITMIME... needed but not offered
    ├── MessageReadError                      the message's file or iterator raised OSError
    ├── ProtocolError
    │   ├── LocalProtocolError                smtpmail was asked to misuse the protocol
    │   └── RemoteProtocolError               the server broke the protocol (malformed reply...)
    ├── TransportError                        transient: the connection failed
    │   ├── ConnectError                      could not connect to any address
    │   │   └── ProxyError                    the proxy refused or failed the tunnel to the
    │   │                                     server (its credentials refused: permanent)
    │   ├── ReplyTimeout                      a reply did not arrive before its deadline
    │   └── ConnectionLost                    the server closed the connection
    ├── TLSError                              a TLS handshake, certificate or policy failure
    │   └── CertificateError                  the server certificate failed verification
    ├── DNSError                              an MX/address lookup failed (direct delivery)
    ├── OutboxError                           the outbox could not write a message or its
    │                                         state (a full disk, a read-only folder)
    ├── ReplyError                            the server answered with an error reply
    │   ├── GreetingRefused                   a 4xx/5xx greeting, or EHLO and HELO refused
    │   ├── ServiceClosing                    421: the server is closing the connection
    │   ├── SenderRefused                     MAIL FROM refused
    │   ├── RecipientsRefused                 every RCPT TO refused (nothing was sent)
    │   ├── DataRefused                       DATA/BDAT or the end of data refused
    │   └── AuthenticationRefused             AUTH refused (535, 534, 538, 454...);
    │                                         also an AuthenticationError
    └── AuthenticationError                   any authentication failure: refused (above), or
        │                                     not attempted safely (no mechanism, no
        │                                     encryption, a looping or lying server)
        └── PlaintextAuthRefused              credentials would travel in clear text

A reply-carrying error keeps the :class:`~smtpmail.protocol.reply.Reply` in
``.reply``; its class (4xx or 5xx) decides whether it is transient.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, TypeVar

    from smtpmail.protocol.reply import Reply

    E = TypeVar("E", bound=BaseException)

__all__ = [
    "AuthenticationError",
    "AuthenticationRefused",
    "CertificateError",
    "ConnectError",
    "ConnectionLost",
    "DNSError",
    "DataRefused",
    "ExtensionNotSupported",
    "GreetingRefused",
    "InputError",
    "InvalidAddress",
    "InvalidArgument",
    "LocalProtocolError",
    "MessageReadError",
    "MessageTooLarge",
    "OutboxError",
    "PlaintextAuthRefused",
    "ProtocolError",
    "ProxyError",
    "RecipientsRefused",
    "RemoteProtocolError",
    "ReplyError",
    "ReplyTimeout",
    "SMTPError",
    "SenderRefused",
    "ServiceClosing",
    "TLSError",
    "TransportError",
]


class SMTPError(Exception):
    """Base of every error smtpmail raises.

    ``results``: when the error interrupts ``send_many`` (or ``send``), the
    results so far, each message with its own outcome: a recipient accepted
    after the data of an earlier transaction was delivered all the same.
    """

    results: list[Any] = []  # noqa: RUF012 - replaced per instance, never mutated
    #: The replies read, for the reads it cut short (a lost connection, a 421),
    #: before it: LMTP's after the data, each its recipient's (``Receive.per_reply``).
    _replies_read: tuple[Reply, ...] = ()

    @property
    def is_transient(self) -> bool:
        """True when the same attempt may succeed later (a 4xx, a dropped connection)."""
        return False

    @property
    def is_permanent(self) -> bool:
        """True when retrying the same thing will fail the same way."""
        return not self.is_transient


class InputError(SMTPError, ValueError):
    """The caller's input cannot be sent; nothing went on the wire."""


class InvalidAddress(InputError):
    """An address that does not parse or breaks the ``<...>`` path syntax."""


class InvalidArgument(InputError):
    """A command argument with control characters, or longer than RFC 5321 allows."""


class MessageTooLarge(InputError):
    """The message is larger than the SIZE the server declared."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} octets exceeds the server's SIZE limit of {limit}")
        self.size = size
        self.limit = limit


class ExtensionNotSupported(InputError):
    """The message needs an extension (SMTPUTF8, 8BITMIME...) that the server does not offer.

    ``enhanced_status``: the RFC 3463 code a bounce would carry, when one is
    defined (5.7.30 for REQUIRETLS, RFC 8689 §4.2.1); None otherwise.
    """

    def __init__(self, message: str, *, enhanced_status: str | None = None) -> None:
        super().__init__(message)
        self.enhanced_status = enhanced_status

    def __reduce__(self) -> tuple[Any, ...]:
        return (_extension_not_supported, (str(self), self.enhanced_status))


def _extension_not_supported(message: str, enhanced_status: str | None) -> ExtensionNotSupported:
    return ExtensionNotSupported(message, enhanced_status=enhanced_status)


class MessageReadError(SMTPError):
    """Reading the message failed: the caller's file or chunk iterator raised OSError.

    The original error is ``__cause__``. When the source fails at once (its
    header section is read ahead, for the Bcc rule) nothing of the message
    went out. When it fails midway, part of the data may have gone out and
    DATA cannot be taken back (RFC 5321 §4.1.1.4: only the final dot ends
    it), so the client closed the connection without ending the data: the
    server discards the transaction. Either way this message was not
    delivered. Permanent for this attempt (the source is half read and still
    broken); not an :class:`InputError`, which promises that nothing was sent.
    """


class ProtocolError(SMTPError):
    """The SMTP protocol was broken, by us or by the peer."""


class LocalProtocolError(ProtocolError):
    """smtpmail was asked to do something the protocol does not allow in this state."""


class RemoteProtocolError(ProtocolError):
    """The server sent something that is not a valid SMTP reply."""

    @property
    def is_transient(self) -> bool:
        # A broken server may be fixed or replaced; the message itself is fine.
        return True


class TransportError(SMTPError):
    """The connection could not be made or was lost.

    ``possibly_delivered`` is True when it happened while waiting for the reply
    to the end of the message data: the server may have taken the message.
    """

    possibly_delivered: bool = False

    @property
    def is_transient(self) -> bool:
        return True


class ConnectError(TransportError):
    """No connection could be made to the server."""


class ProxyError(ConnectError):
    """The proxy could not open the tunnel to the server.

    Transient when the proxy is down, failed, or could not reach the server
    (trying again later may work); permanent when it refused the credentials
    or the destination by its rules, or is not the kind of proxy the URL says
    (a configuration to fix). Never quotes the proxy's password.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient

    @property
    def is_transient(self) -> bool:
        return self.transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (_proxy_error, (str(self), self.transient))


def _proxy_error(message: str, transient: bool) -> ProxyError:
    return ProxyError(message, transient=transient)


class ReplyTimeout(TransportError):
    """A reply did not arrive (whole) before its deadline."""


class ConnectionLost(TransportError):
    """The server closed the connection, or it broke."""


class TLSError(SMTPError):
    """TLS could not be established as the policy demands (handshake, certificate, STARTTLS).

    ``reply`` is the server's refusal of STARTTLS when that was the failure;
    a 4xx one (454: TLS not available for now) makes the error transient, as
    does ``transient``: the network cut the handshake short (a timeout, a
    lost connection), which a later try may not meet.
    """

    def __init__(
        self, message: str, reply: Reply | None = None, *, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.reply = reply
        self.transient = transient

    @property
    def is_transient(self) -> bool:
        return self.transient or (self.reply is not None and self.reply.is_transient)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_tls_error, (type(self), str(self), self.reply, self.transient))


def _tls_error(cls: type[TLSError], message: str, reply: Reply | None, transient: bool) -> TLSError:
    return cls(message, reply, transient=transient)


class CertificateError(TLSError):
    """The server certificate failed verification (RFC 5280 path, RFC 6125 name).

    ``where`` is the server (``host:port``) and ``reason`` what OpenSSL found
    wrong (``self-signed certificate``, ``Hostname mismatch...``): each front
    end words the remedy in its own terms (an argument, an option).
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(
            f"TLS certificate check for {where} failed: {reason}; to trust a private CA "
            "pass TLSOptions(ca_file=...), or pin the certificate with "
            "TLSOptions(fingerprint=...)"
        )
        self.where = where
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.where, self.reason))


class DNSError(SMTPError):
    """A DNS lookup for direct delivery failed (RFC 5321 §5.1).

    NXDOMAIN, a null MX (RFC 7505) or a domain with no address is permanent;
    a timeout, SERVFAIL or a refusing name server is transient.
    """

    def __init__(
        self, message: str, *, transient: bool, enhanced_status: str | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        #: The RFC 3463 code a bounce would carry: 5.1.2 (no such domain),
        #: 5.1.10 (null MX), 4.4.3 (the lookup failed).
        self.enhanced_status = enhanced_status or ("4.4.3" if transient else "5.1.2")

    @property
    def is_transient(self) -> bool:
        return self.transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (_dns_error, (str(self), self.transient, self.enhanced_status))


def _dns_error(message: str, transient: bool, enhanced_status: str | None) -> DNSError:
    return DNSError(message, transient=transient, enhanced_status=enhanced_status)


class OutboxError(SMTPError):
    """The outbox could not write a message or its state to disk.

    ``errno`` is the operating system's reason (``errno.ENOSPC``...). A full
    disk or an I/O error may clear by itself, so the error is transient; a
    read-only folder, a missing permission or a file where a folder should be
    needs someone to fix it.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    @property
    def is_transient(self) -> bool:
        from errno import EACCES, ENOTDIR, EPERM, EROFS

        return self.errno not in (EROFS, EACCES, EPERM, ENOTDIR)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_outbox_error, (str(self), self.errno))


def _outbox_error(message: str, errno: int | None) -> OutboxError:
    return OutboxError(message, errno=errno)


class AuthenticationError(SMTPError):
    """Authentication failed: the server refused it (:class:`AuthenticationRefused`,
    which carries the reply), or it could not be attempted or completed safely
    (no shared mechanism, no encryption, a looping challenge, a SCRAM server
    that does not know the password). One ``except`` catches every kind."""


class PlaintextAuthRefused(AuthenticationError):
    """Credentials would have gone to ``where`` (``host:port``) without TLS, and
    clear-text AUTH was not allowed (RFC 4954 §4: protect them with TLS)."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"refusing to send credentials to {where} over an unencrypted connection; "
            "use tls=TLSMode.REQUIRED (STARTTLS) or TLSMode.IMPLICIT (port 465), or pass "
            "allow_plaintext_auth=True if the network is trusted"
        )
        self.where = where

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.where,))


class ReplyError(SMTPError):
    """The server answered a command with an error reply."""

    def __init__(self, command: str, reply: Reply, message: str | None = None) -> None:
        self.command = command
        self.reply = reply
        text = message or f"{command} refused"
        super().__init__(f"{text}: {reply.code} {reply.text_oneline()}")

    @property
    def code(self) -> int:
        return self.reply.code

    @property
    def is_transient(self) -> bool:
        return self.reply.is_transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.command, self.reply))


class GreetingRefused(ReplyError):
    """The greeting was not 220, or both EHLO and HELO were refused."""


class ServiceClosing(ReplyError):
    """The server answered 421 and closes the connection.

    Replies come in the order of the commands (RFC 2920 §3.1), so the server
    took nothing from the command this 421 answers on: in ``send_many`` each
    message whose transaction it cut short was not delivered (never "possibly
    delivered"), and holds this error in its result.
    """


class SenderRefused(ReplyError):
    """MAIL FROM was refused."""


class RecipientsRefused(ReplyError):
    """Every recipient was refused; no message data was sent.

    ``refused`` maps each forward-path to the reply that refused it; the
    message names every one. Transient when any refusal is (a retry may get
    that recipient through), and ``reply`` is then a transient one, so the
    code shown and the verdict agree.
    """

    def __init__(self, command: str, reply: Reply, refused: dict[str, Reply] | None = None) -> None:
        super().__init__(command, reply, "all recipients refused")
        self.refused = dict(refused or {})
        if self.refused:
            each = "; ".join(
                f"<{rcpt}> {r.code} {r.text_oneline()}" for rcpt, r in self.refused.items()
            )
            self.args = (f"all recipients refused: {each}",)

    @classmethod
    def of(cls, command: str, refused: dict[str, Reply]) -> RecipientsRefused:
        """The error for these refusals, its ``reply`` the first that decides the verdict."""
        replies = list(refused.values())
        retry = [r for r in replies if rcpt_refusal_may_pass_later(r)]
        return cls(command, (retry or replies)[0], refused)

    @property
    def is_transient(self) -> bool:
        return any(rcpt_refusal_may_pass_later(r) for r in self.refused.values() or [self.reply])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.command, self.reply, self.refused))


def rcpt_refusal_may_pass_later(reply: Reply) -> bool:
    """Is this refusal of a recipient (at RCPT) temporary? A 4xx, and a 552: the
    old "too many recipients" (RFC 5321 §4.5.3.1.10), which clients retry."""
    return reply.is_transient or reply.code == 552


class DataRefused(ReplyError):
    """DATA, BDAT or the end of the message data was refused."""


class AuthenticationRefused(ReplyError, AuthenticationError):
    """The server refused the credentials or the AUTH exchange (RFC 4954 §6)."""


def _caused(error: E, cause: BaseException | None) -> E:
    """``error`` with ``cause`` as its cause, as ``raise error from cause`` sets it.

    The optional mypyc build (setup.py) ignores ``from`` in a ``raise``: the
    modules it compiles ``raise _caused(error, exc)`` (or ``_caused(error, None)``)
    to keep the chain in both builds (tests/test_compiled_build.py).
    """
    error.__cause__ = cause  # (which sets __suppress_context__, as "from" does)
    return error


def __getattr__(name: str) -> Any:
    """``AuthError``, the old name of :class:`AuthenticationError`, still works but warns."""
    if name == "AuthError":
        import warnings

        warnings.warn(
            "smtpmail.errors.AuthError is deprecated: use AuthenticationError "
            "(it catches every authentication failure)",
            DeprecationWarning,
            stacklevel=2,
        )
        return AuthenticationError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
