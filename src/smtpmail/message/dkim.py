"""DKIM signing (RFC 6376) with rsa-sha256 or ed25519-sha256 (RFC 8463).

A :class:`DKIMKey` (selector, domain, PEM private key; the algorithm follows
from the key) signs with relaxed/relaxed canonicalization (RFC 6376 §3.4.2,
§3.4.4). What is signed is the message as it goes on the wire: after the Bcc
rule, with every line ending (CRLF, a lone CR, a lone LF) taken as the CRLF
the core sends. The body hash is computed block by block
(:class:`BodyHasher`), so a message streamed from a file is never held whole.

The fields signed are those of :data:`SIGNED_FIELDS` present in the message;
those of :data:`OVERSIGNED_FIELDS` are listed once more than they occur
(RFC 6376 §8.15), so that a field added in transit (a second From, Subject...)
breaks the signature instead of changing what the reader sees; but those of
:data:`ADDED_IN_TRANSIT` only when the message has them, so that a relay
adding a missing Date or Message-ID does not break it.

The key is read with the ``cryptography`` package (``pip install
smtpmail[dkim]``), imported only when a key is made.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable
from pathlib import Path

from smtpmail.errors import InvalidAddress, InvalidArgument
from smtpmail.message.bcc import header_section_end
from smtpmail.protocol.idn import to_a_labels

__all__ = [
    "ADDED_IN_TRANSIT",
    "OVERSIGNED_FIELDS",
    "SIGNED_FIELDS",
    "BodyHasher",
    "DKIMKey",
    "canonical_header",
]

#: RFC 6376 §5.4.1's list of fields that should be signed (those present are).
SIGNED_FIELDS = (
    "from", "reply-to", "subject", "date", "to", "cc", "resent-date", "resent-from",
    "resent-to", "resent-cc", "in-reply-to", "references", "list-id", "list-help",
    "list-unsubscribe", "list-unsubscribe-post", "list-subscribe", "list-post",
    "list-owner", "list-archive", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", "content-id", "content-description", "sender",
)  # fmt: skip
#: Signed once more than they occur: nobody may add one (RFC 6376 §8.15).
OVERSIGNED_FIELDS = frozenset(
    ("from", "reply-to", "subject", "date", "to", "cc", "message-id", "mime-version",
     "content-type", "content-transfer-encoding", "list-unsubscribe",
     "list-unsubscribe-post", "sender")
)  # fmt: skip
#: Oversigned only when present: a submission server or relay adds the ones a
#: message lacks (Postfix and Exim add Date and Message-ID, RFC 6409 §8.2-8.3;
#: Sender, and the MIME fields with an 8-bit downgrade), and listing an absent
#: one in h= would make that addition break the signature (RFC 6376 §5.4).
ADDED_IN_TRANSIT = frozenset(
    ("date", "message-id", "sender", "mime-version", "content-type", "content-transfer-encoding")
)

_LINE_END = re.compile(rb"\r\n|\r|\n")
_WSP_RUN = re.compile(rb"[ \t]+")
_WSP_BEFORE_EOL = re.compile(rb" \r\n")
#: Dot-separated labels (RFC 6376 §3.1 selectors; a leading underscore is allowed).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class BodyHasher:
    """SHA-256 of the relaxed body (RFC 6376 §3.4.4), fed in blocks of any size.

    Line endings are those of the wire (a lone CR or LF counts as CRLF, as the
    core sends it); whitespace runs become one space, whitespace at a line's
    end goes, empty lines at the body's end are not hashed (they are counted
    and hashed only if a non-empty line follows), and an unended last line is
    ended with CRLF, as on the wire.
    """

    __slots__ = ("_carry", "_empty", "_hash")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._carry = b""
        self._empty = 0

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        # The block is cut after its last LF; a CR at its very end may be
        # the first half of a CRLF, so it waits for the next block.
        end = len(data) - 1 if data.endswith(b"\r") else len(data)
        cut = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end)) + 1
        self._carry = data[cut:]
        if cut:
            self._lines(data[:cut])

    def _lines(self, block: bytes) -> None:
        block = _LINE_END.sub(b"\r\n", block)
        block = _WSP_BEFORE_EOL.sub(b"\r\n", _WSP_RUN.sub(b" ", block))
        text = block.rstrip(b"\r\n")
        if not text:
            self._empty += len(block) // 2
            return
        self._hash.update(b"\r\n" * self._empty + text + b"\r\n")
        self._empty = (len(block) - len(text)) // 2 - 1

    def digest(self) -> bytes:
        """The body hash (call once, after the last block)."""
        if self._carry:
            # An unended last line (or a CR left waiting): the wire ends it.
            carry, self._carry = self._carry, b""
            self._lines(carry if carry.endswith(b"\r") else carry + b"\r\n")
        return self._hash.digest()


def canonical_header(name: bytes, value: bytes) -> bytes:
    """One field in relaxed form (RFC 6376 §3.4.2): lowercased name, unfolded,
    whitespace runs as one space, none around the colon or at the end."""
    value = _WSP_RUN.sub(b" ", _LINE_END.sub(b"", value)).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def _fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """The fields of a header section: (name, value with its folds), in order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in _LINE_END.sub(b"\r\n", header).split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


class DKIMKey:
    """A private key to sign with, for ``domain`` (d=) and ``selector`` (s=).

    ``private_key`` is PEM (PKCS#8 or PKCS#1 RSA, or PKCS#8 Ed25519), or an
    Ed25519 key's 32-byte seed in base64 (the file dkimpy's dknewkey writes); the
    algorithm is rsa-sha256 for an RSA key (at least 1024 bits, RFC 8301 §3.2)
    and ed25519-sha256 for an Ed25519 key (RFC 8463). The public key goes in
    the TXT record ``<selector>._domainkey.<domain>``: :meth:`dns_record`.
    A bad key, selector or domain is an :class:`~smtpmail.errors.InvalidArgument`.
    """

    __slots__ = ("_key", "algorithm", "domain", "selector")

    def __init__(self, selector: str, domain: str, private_key: bytes | str) -> None:
        if not _SELECTOR.fullmatch(selector):
            raise InvalidArgument(f"DKIM selector {selector!r} is not a DNS label sequence")
        try:
            # d= in A-labels by the rule every written domain follows (no IDNA
            # 2003 deviation mapping straße.de to another domain, strasse.de).
            domain_ascii = to_a_labels(domain.rstrip("."), "DKIM domain")
        except InvalidAddress as exc:
            raise InvalidArgument(str(exc)) from exc
        self.selector = selector
        self.domain = domain_ascii
        self._key, self.algorithm = _load_key(
            private_key.encode() if isinstance(private_key, str) else private_key
        )

    @classmethod
    def from_file(cls, selector: str, domain: str, key_file: str | Path) -> DKIMKey:
        """The key from a PEM file (an unreadable file is an InvalidArgument)."""
        try:
            pem = Path(key_file).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read the DKIM key file {key_file}: {exc}") from exc
        return cls(selector, domain, pem)

    def __repr__(self) -> str:
        return f"DKIMKey({self.selector!r}, {self.domain!r}, algorithm={self.algorithm!r})"

    def dns_record(self) -> str:
        """The TXT record for the public key (RFC 6376 §3.6.1)."""
        from cryptography.hazmat.primitives import serialization as ser

        public = self._key.public_key()
        if self.algorithm == "ed25519-sha256":
            raw = public.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def sign(self, message: bytes, rest: Iterable[bytes] = ()) -> bytes:
        """The DKIM-Signature field (CRLF-ended) to put before the message.

        The message is ``message`` then the chunks of ``rest``, if any: a
        streamed message is read once for its body hash (``message`` must then
        hold at least its whole header section).
        """
        end = header_section_end(message)
        hasher = BodyHasher()
        # The body starts after the empty line that ends the header section.
        body_start = _LINE_END.match(message, end)
        hasher.feed(message[body_start.end() if body_start else end :])
        for chunk in rest:
            hasher.feed(chunk)
        return self.signature(message[:end], hasher.digest())

    def signature(self, header: bytes, body_hash: bytes, timestamp: int | None = None) -> bytes:
        """The DKIM-Signature field for a header section and a :class:`BodyHasher` digest."""
        fields = _fields(header)
        names = [n.strip(b" \t").lower().decode("ascii", "replace") for n, _ in fields]
        signed: list[str] = []
        for name in SIGNED_FIELDS:
            present = names.count(name)
            oversigned = name in OVERSIGNED_FIELDS and (present or name not in ADDED_IN_TRANSIT)
            count = present + oversigned
            signed += [name] * count
        # RFC 6376 §5.4.2: the n-th occurrence of a name is the n-th from the bottom.
        hashed = b""
        used: dict[str, int] = {}
        for name in signed:
            index = [i for i, n in enumerate(names) if n == name]
            k = used.get(name, 0)
            used[name] = k + 1
            if k < len(index):
                field = fields[index[-1 - k]]
                hashed += canonical_header(*field)
        stamp = int(time.time()) if timestamp is None else timestamp
        unsigned = (
            f"DKIM-Signature: v=1; a={self.algorithm}; c=relaxed/relaxed;\r\n"
            f" d={self.domain}; s={self.selector}; t={stamp};\r\n"
            f" h={_fold_list(signed)};\r\n"
            f" bh={base64.b64encode(body_hash).decode()};\r\n"
            " b="
        ).encode("ascii")
        # The signature's own field is hashed last, b= empty, without its CRLF (§3.7).
        hashed += canonical_header(b"DKIM-Signature", unsigned[len("DKIM-Signature:") :])[:-2]
        b = base64.b64encode(self._sign(hashed)).decode()
        return unsigned + _fold_b64(b).encode("ascii") + b"\r\n"

    def _sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding

        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            # RFC 8463 §3: Ed25519 signs the SHA-256 hash of the header data.
            return self._key.sign(hashlib.sha256(data).digest())
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _fold_list(names: Iterable[str]) -> str:
    out, width = "", 4
    for i, name in enumerate(names):
        piece = (":" if i else "") + name
        if width + len(piece) > 72:
            out += "\r\n\t"
            width = 1
        out += piece
        width += len(piece)
    return out


def _fold_b64(value: str) -> str:
    return "\r\n\t".join(value[i : i + 72] for i in range(0, len(value), 72))


def _bare_ed25519_seed(text: bytes) -> bytes | None:
    """The 32-byte seed of an Ed25519 key written as bare base64 (RFC 8463 §4),
    as dkimpy's dknewkey and signer keep it; None for anything else (PEM...)."""
    import binascii

    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return seed if len(seed) == 32 else None


def _load_key(pem: bytes) -> tuple[Key, str]:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError as exc:  # pragma: no cover (the test extra has it)
        raise InvalidArgument(
            "DKIM signing needs the cryptography package: pip install 'smtpmail[dkim]'"
        ) from exc
    seed = _bare_ed25519_seed(pem)
    if seed is not None:
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed), "ed25519-sha256"
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"not an unencrypted PEM private key (nor an Ed25519 key in base64): {exc}"
        ) from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key, "ed25519-sha256"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise InvalidArgument(f"a {key.key_size}-bit RSA key is too short for DKIM (RFC 8301)")
        return key, "rsa-sha256"
    raise InvalidArgument(f"DKIM signs with an RSA or Ed25519 key, not {type(key).__name__}")


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    Key: TypeAlias = "rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey"
