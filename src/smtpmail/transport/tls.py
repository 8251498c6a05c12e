"""TLS for a connection: implicit TLS (RFC 8314) or STARTTLS (RFC 3207).

The policy is one value (:class:`TLSMode`); the unsafe choices say so in
their names. :func:`make_context` builds the verifying context every
connection uses (system CA store, host name check, TLS 1.2 or newer), and
:func:`check_peer` pins a certificate fingerprint and summarises the
session as :class:`TLSInfo` after the handshake.

After every handshake (STARTTLS or implicit, sync or asyncio) the transport
calls :func:`check_peer`, which hands the chain *as the server sent it* to
:func:`verify_chain`: the one post-handshake certificate check, where a
SHA-256 fingerprint pin, SPKI pins and DANE (RFC 7672, through
:mod:`smtpmail.transport.dane`) are enforced.
"""

from __future__ import annotations

import enum

from smtpmail._record import Frozen
from smtpmail.errors import CertificateError, InputError, TLSError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

    from smtpmail.transport.dane import DANECheck
    from smtpmail.transport.x509 import Certificate

# ssl, hashlib and hmac are imported inside the functions that use them: the
# policy names (TLSMode, TLSOptions) are needed by every client, but a
# clear-text send to a local relay never starts TLS and should not pay for
# loading OpenSSL (the CLI's start-up time, bench scenario 6).

__all__ = [
    "TLSInfo",
    "TLSMode",
    "TLSOptions",
    "check_peer",
    "make_context",
    "peer_chain",
    "resolve_mode",
    "verify_chain",
]

#: How an SPKI pin in base64 may start (curl's ``--pinnedpubkey``, RFC 7469's header).
_PIN_PREFIXES = ("sha256//", "sha256/", "pin-sha256=")

#: The implicit TLS submission port (RFC 8314 §3.3).
SMTPS_PORT = 465


class TLSMode(enum.Enum):
    """How a connection uses TLS."""

    #: Never use TLS: everything, credentials included, travels in clear text.
    PLAINTEXT_INSECURE = "none"
    #: STARTTLS when the server offers it, else clear text (MX delivery's default).
    OPPORTUNISTIC = "opportunistic"
    #: STARTTLS or fail: no byte of mail or credentials before TLS is up.
    REQUIRED = "starttls"
    #: TLS from the first byte (``smtps://``, port 465).
    IMPLICIT = "implicit"


class TLSOptions(Frozen):
    """Certificate checks and client credentials for TLS.

    Verification against the system store and the configured host name is on
    by default; ``verify_insecure_off=True`` switches it off, and says so.
    A ``fingerprint`` pins the server certificate instead of the CA store
    (as msmtp's ``tls_fingerprint``), unless ``ca_file``/``ca_path`` are given
    too, when both must hold. ``spki_pins`` pin the server's public key the
    same way (``sha256/<base64>`` as ``openssl ... | base64`` or curl's
    ``--pinnedpubkey`` print it, or 64 hex digits; any one may match), so a
    renewed certificate with the same key still passes. ``dane`` (set by
    direct delivery from DNSSEC-validated TLSA records) replaces the CA check
    with DANE (RFC 7672). Immutable; ``replace()`` makes changed copies.
    """

    _fields = (
        "ca_file",
        "ca_path",
        "cert_file",
        "key_file",
        "fingerprint",
        "server_hostname",
        "verify_insecure_off",
        "spki_pins",
        "dane",
    )
    __slots__ = _fields

    ca_file: str | None
    ca_path: str | None
    cert_file: str | None
    key_file: str | None
    #: Pin the server certificate by the SHA-256 of its DER form (hex, colons allowed).
    fingerprint: str | None
    #: The name to check the certificate against and send in SNI (default: the host).
    server_hostname: str | None
    verify_insecure_off: bool
    #: SHA-256 pins of the server key's SubjectPublicKeyInfo (RFC 7469 §2.4 form).
    spki_pins: tuple[str, ...]
    #: The TLSA records the chain must match (direct delivery sets it).
    dane: DANECheck | None

    def __init__(  # noqa: PLR0917 (positional, as the dataclass it replaces)
        self,
        ca_file: str | None = None,
        ca_path: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        fingerprint: str | None = None,
        server_hostname: str | None = None,
        verify_insecure_off: bool = False,
        spki_pins: Sequence[str] = (),
        dane: DANECheck | None = None,
    ) -> None:
        if isinstance(spki_pins, str):  # one pin, not its characters
            spki_pins = (spki_pins,)
        if server_hostname is not None and not server_hostname.isascii():
            from smtpmail.protocol.idn import host_name  # (start-up time: only for IDNs)

            # SNI and the name check get A-labels, never the stdlib's IDNA 2003 reading.
            server_hostname = host_name(server_hostname, "TLSOptions.server_hostname")
        self._init(
            ca_file=ca_file,
            ca_path=ca_path,
            cert_file=cert_file,
            key_file=key_file,
            fingerprint=fingerprint,
            server_hostname=server_hostname,
            verify_insecure_off=verify_insecure_off,
            spki_pins=tuple(spki_pins),
            dane=dane,
        )

    def pinned(self) -> bytes | None:
        """The pinned fingerprint as bytes, or None."""
        if self.fingerprint is None:
            return None
        text = self.fingerprint.replace(":", "").replace(" ", "").lower()
        if text.startswith("sha256"):
            text = text[6:].lstrip("=/")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            value = b""
        if len(value) != 32:
            raise InputError("the TLS fingerprint must be a SHA-256 hash: 64 hex digits")
        return value

    def pinned_keys(self) -> tuple[bytes, ...]:
        """The SPKI pins as SHA-256 digests; InputError for one that is not."""
        if not self.spki_pins:
            return ()  # base64 is not loaded for a plain send (the CLI's start-up time)
        import base64
        import binascii

        digests = []
        for pin in self.spki_pins:
            text = pin.strip()
            # "sha256//x" is curl's prefix with "x", or "sha256/" with base64 that
            # starts with "/": each prefix that fits is tried, and the digest is
            # the reading that gives 32 bytes.
            lower = text.lower()
            readings = [text[len(p) :].strip('"') for p in _PIN_PREFIXES if lower.startswith(p)]
            value = b""
            for reading in readings:
                try:
                    value = base64.b64decode(reading, validate=True)
                except (ValueError, binascii.Error):
                    continue
                if len(value) == 32:
                    break
            if not readings and len(hexdigits := text.replace(":", "")) == 64:
                try:
                    value = bytes.fromhex(hexdigits)
                except ValueError:
                    value = b""
            if len(value) != 32:
                raise InputError(
                    f"the SPKI pin {pin!r} must be sha256/<base64> or 64 hex digits "
                    "(the SHA-256 of the server's SubjectPublicKeyInfo)"
                )
            digests.append(value)
        return tuple(digests)

    @property
    def replaces_ca_check(self) -> bool:
        """A pin or DANE decides instead of the CA store (unless a CA was named too)."""
        if self.dane is not None:
            return True  # RFC 7672 §3.1.3: DANE-TA/EE replace the web PKI for SMTP
        pinned = self.fingerprint is not None or bool(self.spki_pins)
        return pinned and not (self.ca_file or self.ca_path)


class TLSInfo(Frozen):
    """What was negotiated: shown by the CLI, kept on the client as ``tls_info``."""

    _fields = (
        "version",
        "cipher",
        "subject",
        "issuer",
        "not_after",
        "names",
        "fingerprint",
        "verified",
        "server_hostname",
        "chain",
        "not_before",
        "checked",
    )
    __slots__ = _fields

    version: str
    cipher: str
    #: What the server certificate says (``CN=...``; ``Jun  1 12:00:00 2030 GMT``),
    #: read from it whether or not it was verified (``verified`` says which).
    subject: str | None
    issuer: str | None
    not_before: str | None
    not_after: str | None
    #: DNS names and addresses the certificate names.
    names: tuple[str, ...]
    #: SHA-256 of the DER certificate, colon-separated hex (what ``fingerprint`` pins).
    fingerprint: str
    verified: bool
    server_hostname: str | None
    #: Every certificate the server sent, leaf first (the verified chain when verified).
    chain: tuple[Certificate, ...]
    #: What the post-handshake check verified: ``"dane-ee verified"``, ``"spki pin"``...
    checked: str | None

    def __init__(  # noqa: PLR0917 (positional, as the dataclass it replaces)
        self,
        version: str,
        cipher: str,
        subject: str | None,
        issuer: str | None,
        not_after: str | None,
        names: tuple[str, ...],
        fingerprint: str,
        verified: bool,
        server_hostname: str | None,
        chain: tuple[Certificate, ...] = (),
        not_before: str | None = None,
        checked: str | None = None,
    ) -> None:
        self._init(
            version=version,
            cipher=cipher,
            subject=subject,
            issuer=issuer,
            not_before=not_before,
            not_after=not_after,
            names=names,
            fingerprint=fingerprint,
            verified=verified,
            server_hostname=server_hostname,
            chain=chain,
            checked=checked,
        )

    @property
    def authenticated(self) -> bool:
        """The server proved who it is: a CA-verified certificate, DANE or a pin."""
        return self.verified or self.checked is not None

    def __str__(self) -> str:
        who = self.subject or "(a certificate without a subject)"
        how = f" ({self.checked})" if self.checked else ("" if self.verified else " (not verified)")
        return f"{self.version} {self.cipher}, {who}{how}"


def resolve_mode(
    mode: TLSMode | str | None, port: int, authenticates: bool, allow_plaintext_auth: bool = False
) -> TLSMode:
    """The mode to use: IMPLICIT on 465, REQUIRED with credentials, else OPPORTUNISTIC.

    Credentials make TLS required only to protect them: when clear-text AUTH is
    allowed (``allow_plaintext_auth``, ``--allow-plaintext-auth``), the mode stays
    OPPORTUNISTIC (STARTTLS when offered, else AUTH in clear), as swaks and msmtp
    log in to a server without STARTTLS."""
    if isinstance(mode, TLSMode):
        return mode
    if mode is not None:
        try:
            return TLSMode(mode)
        except ValueError:
            try:
                return TLSMode[mode.upper()]
            except KeyError:
                names = ", ".join(m.value for m in TLSMode)
                raise InputError(f"unknown TLS mode {mode!r}; use one of {names}") from None
    if port == SMTPS_PORT:
        return TLSMode.IMPLICIT
    return TLSMode.REQUIRED if authenticates and not allow_plaintext_auth else TLSMode.OPPORTUNISTIC


def make_context(options: TLSOptions | None = None) -> ssl.SSLContext:
    """A client context: verifying by default, TLS 1.2 or newer."""
    import ssl

    opts = options or TLSOptions()
    opts.pinned()  # bad pins are InputError before any connection
    opts.pinned_keys()
    # ssl's errors do not name the file (``[Errno 2] No such file or directory``):
    # each step names the files it reads.
    files = " and ".join(f for f in (opts.ca_file, opts.ca_path) if f)
    try:
        ctx = ssl.create_default_context(cafile=opts.ca_file, capath=opts.ca_path)
        if opts.cert_file:
            files = " and ".join(f for f in (opts.cert_file, opts.key_file) if f)
            ctx.load_cert_chain(opts.cert_file, opts.key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot load the TLS certificates from {files}: {reason}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if opts.verify_insecure_off or opts.replaces_ca_check:
        # The pin or DANE (checked after the handshake) replaces the CA check, or nothing does.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_peer(
    conn: ssl.SSLSocket | ssl.SSLObject, options: TLSOptions | None, server_hostname: str | None
) -> TLSInfo:
    """After every handshake: run :func:`verify_chain`, return what was negotiated."""
    import hashlib

    opts = options or TLSOptions()
    der = conn.getpeercert(binary_form=True) or b""
    checked = verify_chain(peer_chain(conn) or (der,), opts)
    digest = hashlib.sha256(der).digest()
    verified = bool(conn.getpeercert())  # an empty dict when not verified
    leaf = _describe(der)
    cipher = conn.cipher()
    return TLSInfo(
        version=conn.version() or "?",
        cipher=cipher[0] if cipher else "?",
        subject=leaf.subject,
        issuer=leaf.issuer,
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        names=leaf.names,
        fingerprint=_colons(digest),
        verified=verified,
        server_hostname=server_hostname,
        chain=_chain(conn, verified=verified),
        checked=checked,
    )


def verify_chain(chain: Sequence[bytes], options: TLSOptions) -> str | None:
    """The post-handshake certificate check: pins and DANE, on the chain as sent.

    ``chain`` is the server's certificates, leaf first, DER. Raises
    :class:`~smtpmail.errors.TLSError` when a check fails; returns what was
    verified (``"fingerprint pin"``, ``"spki pin"``, ``"dane-ee verified"``,
    ``"dane-ta verified"``) or None when nothing beyond the handshake's own
    CA check was asked for. Pins are held against the leaf only: the rest of
    an unverified chain is whatever the server chose to send.
    """
    import hashlib
    import hmac

    leaf = chain[0] if chain else b""
    done: list[str] = []
    pinned = options.pinned()
    if pinned is not None:
        digest = hashlib.sha256(leaf).digest()
        if not hmac.compare_digest(digest, pinned):
            raise TLSError(
                "the server certificate does not match the pinned fingerprint "
                f"(it is {_colons(digest)})"
            )
        done.append("fingerprint pin")
    keys = options.pinned_keys()
    if keys:
        from smtpmail.transport.x509 import subject_public_key_info

        spki = hashlib.sha256(subject_public_key_info(leaf)).digest()
        if not any(hmac.compare_digest(spki, key) for key in keys):
            import base64

            raise TLSError(
                "the server's public key matches none of the SPKI pins "
                f"(it is sha256/{base64.b64encode(spki).decode()})"
            )
        done.append("spki pin")
    if options.dane is not None:
        from smtpmail.transport.dane import match_chain

        done.append(match_chain(chain, options.dane))
    return ", ".join(done) or None


def peer_chain(conn: ssl.SSLSocket | ssl.SSLObject) -> tuple[bytes, ...]:
    """The certificates the server sent, leaf first, DER; () if this Python cannot tell."""
    return _der_chain(conn, "get_unverified_chain")


def _der_chain(conn: ssl.SSLSocket | ssl.SSLObject, which: str) -> tuple[bytes, ...]:
    """``get_verified_chain()`` or ``get_unverified_chain()``, as DER, leaf first.

    Public from Python 3.13 (DER bytes); 3.11 and 3.12 have the same methods
    on the private ``_sslobj`` only, returning certificate objects.
    """
    getter = getattr(conn, which, None) or getattr(getattr(conn, "_sslobj", None), which, None)
    if getter is None:
        return ()
    # Certificate.public_bytes' format constant: in _ssl (private) before 3.13 too.
    from _ssl import ENCODING_DER

    return tuple(
        cert if isinstance(cert, bytes) else cert.public_bytes(ENCODING_DER)
        for cert in getter() or ()
    )


def _describe(der: bytes) -> Certificate:
    """The one way a certificate is read (leaf and chain, verified or not)."""
    from smtpmail.transport.x509 import Certificate, CertificateParseError, read_certificate

    try:
        return read_certificate(der)
    except CertificateParseError:
        return Certificate(None, None, None, None)


def _chain(conn: ssl.SSLSocket | ssl.SSLObject, *, verified: bool) -> tuple[Certificate, ...]:
    """The certificates the handshake saw, leaf first (the verified chain when verified)."""
    which = "get_verified_chain" if verified else "get_unverified_chain"
    return tuple(_describe(der) for der in _der_chain(conn, which))


def handshake_error(exc: BaseException, where: str) -> TLSError:
    """A TLSError that says what failed and how to fix it."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(where, str(exc.verify_message))
    if isinstance(exc, TimeoutError):
        return TLSError(f"TLS handshake with {where} timed out", transient=True)
    # The connection closed or reset under the handshake (ssl's "EOF occurred in
    # violation of protocol"; "TLS/SSL connection has been closed (EOF)", as
    # OpenSSL 3.0 with Debian's Python says it; a system call's error; or the
    # socket's own): the network's fault, as a connection lost anywhere else.
    # An SSLError proper is the server's answer (an alert, bytes that are not
    # TLS) and would come again.
    lost = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
    if isinstance(exc, lost) or not isinstance(exc, ssl.SSLError):
        detail = ""
        if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
            detail = f" ({exc.strerror})"  # "Connection reset by peer"
        return TLSError(
            f"TLS handshake with {where} failed: the connection was lost{detail}", transient=True
        )
    reason = getattr(exc, "reason", None) or exc
    return TLSError(f"TLS handshake with {where} failed: {reason}")


def _colons(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)
