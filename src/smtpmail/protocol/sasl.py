"""SASL mechanisms for SMTP AUTH (RFC 4954) as challenge/response generators.

Each mechanism is a generator, as httpx's auth flows: it first yields its
initial response (or None when the client cannot speak first), then is sent
each server challenge (decoded from base64) and yields the answer. The
session (:meth:`smtpmail.protocol.session.Session.authenticate`) drives it,
so the blocking and the asyncio clients share every line of it.

Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5
(RFC 2195), XOAUTH2 (Google's), OAUTHBEARER (RFC 7628), SCRAM-SHA-1 and
SCRAM-SHA-256 (RFC 5802, RFC 7677) with SASLprep (RFC 4013) of the password.

Every string that would reveal the credentials (the password or token, the
user name, their base64 forms, each response sent) is collected in
``Mechanism.secrets`` (:class:`~smtpmail.protocol.redaction.Secrets`); the
session redacts them from every reply it reads for the rest of the
connection, so the transcript, the logs, the results and the error texts
never show them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Generator, Iterable
from typing import ClassVar

from smtpmail.errors import AuthenticationError, InputError, InvalidArgument
from smtpmail.protocol.commands import check_characters, check_text
from smtpmail.protocol.redaction import REDACTED, Secrets

__all__ = [
    "MECHANISMS",
    "Credentials",
    "Mechanism",
    "SASLFlow",
    "choose",
    "mechanism_name",
    "saslprep",
]

#: Yields the client's responses (the first one: the initial response or None);
#: is sent each decoded server challenge.
SASLFlow = Generator[bytes | None, bytes, None]

Secret = str | Callable[[], str]


class Credentials:
    """A user name and a password, or an OAuth 2.0 access token.

    ``password`` and ``token`` may be callables, asked each time a connection
    authenticates (so a token can be refreshed, or a password come from a
    keyring or a command). The secret never appears in ``repr`` or ``str``.
    ``authzid`` is the identity to act as (RFC 4616), usually empty.
    """

    __slots__ = ("_password", "_token", "authzid", "username")

    def __init__(
        self,
        username: str,
        password: Secret | None = None,
        *,
        token: Secret | None = None,
        authzid: str = "",
    ) -> None:
        if not isinstance(username, str):
            raise InputError("the user name must be a str")
        if password is None and token is None:
            raise InputError("credentials need a password or an OAuth token")
        # Controls would break the SASL framing (NUL in PLAIN, ^A in XOAUTH2):
        # an identity injection. Refused here, before any connection.
        check_text(username, "AUTH user name")
        check_text(authzid, "AUTH authorization identity")
        # A secret given as a value is checked now, before any connection; a
        # callable's answer when it is asked (_resolve).
        if password is not None and not callable(password):
            _checked(password, "password")
        if token is not None and not callable(token):
            _checked(token, "OAuth token")
        self.username = username
        self._password = password
        self._token = token
        self.authzid = authzid

    @classmethod
    def of(cls, value: Credentials | tuple[str, str] | None) -> Credentials | None:
        """Accept ``Credentials``, a ``(user, password)`` pair, or None."""
        if value is None or isinstance(value, Credentials):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return cls(value[0], value[1])
        raise InputError("auth must be Credentials or a (username, password) tuple")

    @property
    def has_password(self) -> bool:
        return self._password is not None

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def password(self) -> str:
        return _resolve(self._password, "password")

    def token(self) -> str:
        return _resolve(self._token, "OAuth token")

    def __repr__(self) -> str:
        kind = "token" if self._token is not None else "password"
        return f"Credentials(username={self.username!r}, {kind}={REDACTED})"

    __str__ = __repr__


def _resolve(secret: Secret | None, what: str) -> str:
    if secret is None:
        raise AuthenticationError(f"the chosen mechanism needs a {what}, and none was given")
    if not callable(secret):
        return secret  # (checked when the credentials were made)
    value = secret()
    if not isinstance(value, str):
        raise AuthenticationError(f"the {what} callable must return a str")
    return _checked(value, what)


def _checked(value: object, what: str) -> str:
    """``value`` as a secret: a str that cannot add SASL fields."""
    if not isinstance(value, str):
        raise InvalidArgument(
            f"the {what} must be a str or a callable returning one, not {type(value).__name__}"
        )
    # NUL ends a PLAIN field (RFC 4616 §2) and ^A an XOAUTH2 one: never let a
    # secret add fields. The message names the character class, not the secret.
    if "\0" in value or (what != "password" and "\x01" in value):
        raise InvalidArgument(f"the {what} contains a NUL or ^A control character")
    try:
        check_characters(value, what)
    except InvalidArgument:  # (its message shows the octet: not for a secret)
        pass
    else:
        return value
    # Raised here, out of the handler: not even as a hidden context ("from None").
    raise InvalidArgument(
        f"the {what} holds an octet that is not UTF-8 (an environment variable or a "
        "command's output in another encoding?)"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Mechanism:
    """One SASL exchange; subclasses implement :meth:`flow`."""

    name: ClassVar[str]
    #: Needs a password (else an OAuth token).
    uses_token: ClassVar[bool] = False
    #: Its challenges (334) may be shown (``-v``, the logs) until the exchange is
    #: complete: fixed prompts, which tell nothing about the credentials. Not
    #: where a challenge feeds an offline attack on the password: CRAM-MD5's
    #: is the nonce its digest is made of, SCRAM's carries the salt and the
    #: iteration count; with the response, a dictionary attack needs no server.
    #: OAuth's 334 is an error document, about the token.
    public_challenges: ClassVar[bool] = False

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        #: Every form of the credentials, to redact wherever server text is shown.
        self.secrets = Secrets()
        self.secrets.add_name(credentials.username)
        self.secrets.add_name(credentials.authzid)
        #: Set when the mechanism has checked all it must (SCRAM: the server's proof).
        self.complete = False

    def flow(self) -> SASLFlow:
        raise NotImplementedError

    def _secret(self, value: str) -> str:
        """Remember ``value`` (and its base64 forms) as secret; return it."""
        if value:
            encoded = _b64(value.encode("utf-8"))
            for form in (value, encoded, encoded.rstrip("=")):
                self.secrets.add(form)
        return value

    def _response(self, data: bytes) -> bytes:
        """A response about to be sent: its base64 forms are secret too."""
        if data:
            encoded = _b64(data)
            self.secrets.add(encoded)
            self.secrets.add(encoded.rstrip("="))
        return data


class Plain(Mechanism):
    """PLAIN (RFC 4616): ``authzid NUL user NUL password`` in the first message."""

    name = "PLAIN"

    def flow(self) -> SASLFlow:
        c = self.credentials
        password = self._secret(c.password())
        msg = "\0".join((c.authzid, c.username, password)).encode("utf-8")
        self.complete = True
        yield self._response(msg)


class Login(Mechanism):
    """LOGIN: the server asks for the user name, then the password."""

    name = "LOGIN"
    #: "Username:" and "Password:" (VXNlcm5hbWU6, UGFzc3dvcmQ6), as every server says.
    public_challenges = True

    def flow(self) -> SASLFlow:
        c = self.credentials
        password = self._secret(c.password())
        yield None  # the server speaks first ("334 VXNlcm5hbWU6")
        yield self._response(c.username.encode("utf-8"))
        self.complete = True
        yield self._response(password.encode("utf-8"))


class CramMD5(Mechanism):
    """CRAM-MD5 (RFC 2195): the user and HMAC-MD5(password, challenge) in hex."""

    name = "CRAM-MD5"

    def flow(self) -> SASLFlow:
        c = self.credentials
        password = self._secret(c.password())
        challenge = yield None
        import hashlib
        import hmac

        digest = hmac.new(password.encode("utf-8"), challenge, hashlib.md5).hexdigest()
        self.complete = True
        yield self._response(f"{c.username} {digest}".encode())


class XOAuth2(Mechanism):
    """XOAUTH2: ``user=... ^A auth=Bearer <token> ^A ^A``; an error comes as a 334."""

    name = "XOAUTH2"
    uses_token = True

    def flow(self) -> SASLFlow:
        c = self.credentials
        token = self._secret(c.token())
        msg = f"user={c.username}\x01auth=Bearer {token}\x01\x01".encode()
        self.complete = True
        yield self._response(msg)
        # A 334 here carries a JSON error; the client answers with an empty line.
        yield b""


class OAuthBearer(Mechanism):
    """OAUTHBEARER (RFC 7628): a GS2 header and ``auth=Bearer <token>``."""

    name = "OAUTHBEARER"
    uses_token = True

    def flow(self) -> SASLFlow:
        c = self.credentials
        token = self._secret(c.token())
        authzid = _scram_name(c.username)
        self.secrets.add_name(authzid)  # the user name as this mechanism escapes it
        msg = f"n,a={authzid},\x01auth=Bearer {token}\x01\x01".encode()
        self.complete = True
        yield self._response(msg)
        # RFC 7628 §3.2.3: an error challenge is answered with a lone %x01.
        yield b"\x01"


class _Scram(Mechanism):
    """SCRAM (RFC 5802) without channel binding; the server must prove itself."""

    digest: ClassVar[str]
    #: Refuse iteration counts that would let a server burn our CPU.
    MAX_ITERATIONS: ClassVar[int] = 1_000_000

    def __init__(self, credentials: Credentials, nonce: str | None = None) -> None:
        super().__init__(credentials)
        import secrets as _random  # here, not at the top: only SCRAM needs it

        self.nonce = nonce or _random.token_urlsafe(24)

    def flow(self) -> SASLFlow:
        c = self.credentials
        password = saslprep(self._secret(c.password()))
        gs2 = "n," + (f"a={_scram_name(c.authzid)}," if c.authzid else ",")
        name = _scram_name(saslprep(c.username))
        self.secrets.add_name(name)  # the user name as this mechanism prepares and escapes it
        first_bare = f"n={name},r={self.nonce}"
        server_first_raw = yield self._response((gs2 + first_bare).encode("utf-8"))
        server_first = server_first_raw.decode("utf-8", "replace")
        attrs = _scram_attrs(server_first)
        nonce, salt_b64, iterations = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise AuthenticationError("SCRAM: the server's nonce does not extend ours")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
            rounds = int(iterations)
        except ValueError:
            raise AuthenticationError("SCRAM: malformed salt or iteration count") from None
        if not 1 <= rounds <= self.MAX_ITERATIONS:
            raise AuthenticationError(f"SCRAM: iteration count {rounds} out of range")
        import hashlib
        import hmac

        salted = hashlib.pbkdf2_hmac(self.digest, password.encode("utf-8"), salt, rounds)
        without_proof = f"c={_b64(gs2.encode('utf-8'))},r={nonce}"
        auth_message = f"{first_bare},{server_first},{without_proof}".encode()
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.digest, client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        final = f"{without_proof},p={_b64(proof)}".encode()
        server_final = (yield self._response(final)).decode("utf-8", "replace")
        verifier = _scram_attrs(server_final)
        if "e" in verifier:
            raise AuthenticationError(f"SCRAM: the server reported {verifier['e']!r}")
        if not hmac.compare_digest(verifier.get("v", ""), _b64(server_signature)):
            raise AuthenticationError(
                "SCRAM: the server's signature is wrong; it does not know the password"
            )
        self.complete = True
        yield b""

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        import hmac

        return hmac.new(key, msg, self.digest).digest()


class ScramSHA1(_Scram):
    name = "SCRAM-SHA-1"
    digest = "sha1"


class ScramSHA256(_Scram):
    name = "SCRAM-SHA-256"
    digest = "sha256"


def _scram_name(name: str) -> str:
    """RFC 5802 §5.1 saslname: ``=`` and ``,`` escaped."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _scram_attrs(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if sep and len(key) == 1 and key not in out:
            out[key] = value
    return out


#: Every mechanism by name, strongest first (the order :func:`choose` prefers).
MECHANISMS: dict[str, type[Mechanism]] = {
    m.name: m for m in (ScramSHA256, ScramSHA1, CramMD5, Plain, Login, OAuthBearer, XOAuth2)
}


def mechanism_name(name: str) -> str:
    """``name`` upper-cased, if it is a mechanism this library implements; an
    unknown one is the caller's mistake, caught before connecting."""
    if name.upper() not in MECHANISMS:
        raise InvalidArgument(f"unknown AUTH mechanism {name!r}; known: {', '.join(MECHANISMS)}")
    return name.upper()


def choose(
    offered: Iterable[str], credentials: Credentials, explicit: str | None = None
) -> Mechanism:
    """The mechanism to use: ``explicit`` if the server offers it, else the strongest
    offered one the credentials can serve."""
    offered_set = {m.upper() for m in offered}
    if explicit is not None:
        name = mechanism_name(explicit)
        if name not in offered_set:
            raise AuthenticationError(
                f"the server does not offer AUTH {name} (it offers: "
                f"{', '.join(sorted(offered_set)) or 'nothing'})"
            )
        return MECHANISMS[name](credentials)
    if not offered_set:
        raise AuthenticationError("the server does not offer AUTH; cannot authenticate")
    for name, mech in MECHANISMS.items():
        usable = credentials.has_token if mech.uses_token else credentials.has_password
        if name in offered_set and usable:
            return mech(credentials)
    kind = "an OAuth token" if credentials.has_token else "a password"
    raise AuthenticationError(
        f"no AUTH mechanism offered by the server ({', '.join(sorted(offered_set))}) "
        f"works with {kind}"
    )


# -- SASLprep (RFC 4013), for SCRAM ------------------------------------------


def saslprep(text: str) -> str:
    """Prepare a user name or password (RFC 4013, as a "query": unassigned allowed)."""
    # Imported here: stringprep and unicodedata cost start-up time that a
    # send without SCRAM (the CLI's one-message send) should not pay.
    import stringprep
    import unicodedata

    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    out = unicodedata.normalize("NFKC", mapped)
    for ch in out:
        if any(table(ch) for table in prohibited):
            # The character itself is not named: it may be part of the password.
            raise AuthenticationError("SASLprep: the credentials contain a prohibited character")
    # RFC 3454 §6: bidirectional text must not mix directions.
    if any(stringprep.in_table_d1(ch) for ch in out):
        if any(stringprep.in_table_d2(ch) for ch in out):
            raise AuthenticationError("SASLprep: mixed right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise AuthenticationError("SASLprep: right-to-left text must start and end so")
    return out
