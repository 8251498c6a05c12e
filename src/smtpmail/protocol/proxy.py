"""Proxy URLs and the handshakes that open a tunnel through a proxy, sans-IO.

A :class:`Proxy` is parsed and checked from its URL before anything is sent;
a :class:`Tunnel` is the client side of one handshake, bytes in and bytes out,
driven by the transport over the connection to the proxy:

- ``socks5://`` and ``socks5h://``: SOCKS version 5 (RFC 1928 §3-§6), with
  username/password authentication (RFC 1929 §2) when the URL has them.
  ``socks5`` sends the server's address, resolved here; ``socks5h`` sends its
  name and lets the proxy resolve it (curl's meaning of the two schemes).
- ``socks4://`` and ``socks4a://``: SOCKS 4 (an IPv4 address resolved here)
  and its 4A extension (the name, resolved by the proxy); the URL's user name
  is the USERID field, SOCKS 4 has no password.
- ``http://``: HTTP CONNECT (RFC 9110 §9.3.6), with Basic credentials
  (RFC 7617) in ``Proxy-Authorization`` (RFC 9110 §11.7.2) when given.

The credentials never appear in a repr, a str or an error: they are shown as
:data:`~smtpmail.protocol.redaction.REDACTED`, and what the proxy says back is
shown with every form of them hidden (:class:`~smtpmail.protocol.redaction.Secrets`).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Generator

from smtpmail._record import Frozen
from smtpmail.errors import InputError, InvalidArgument, LocalProtocolError, ProxyError
from smtpmail.protocol import idn
from smtpmail.protocol.commands import check_characters, check_port
from smtpmail.protocol.redaction import REDACTED, Secrets

__all__ = ["SCHEMES", "Proxy", "Tunnel", "redact_url"]

#: The schemes a proxy URL may have, and whether the proxy resolves the server's name.
SCHEMES = {"socks5": False, "socks5h": True, "socks4": False, "socks4a": True, "http": True}

_DEFAULT_PORTS = {"socks5": 1080, "socks5h": 1080, "socks4": 1080, "socks4a": 1080}

#: The longest reply head an HTTP proxy may send to CONNECT before we give up on it.
MAX_HTTP_HEAD = 16 * 1024


class Proxy(Frozen):
    """A proxy from its URL: ``socks5://user:pass@host:1080``, ``http://host:3128``..."""

    _fields = ("scheme", "host", "port", "username", "password")
    __slots__ = _fields

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._init(scheme=scheme, host=host, port=port, username=username, password=password)
        _check(self)

    @classmethod
    def of(cls, value: Proxy | str) -> Proxy:
        return value if isinstance(value, Proxy) else cls.parse(value)

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """The proxy a URL names; :class:`~smtpmail.errors.InvalidArgument` (which
        never quotes the password) when it is not one this client can use."""
        from urllib.parse import unquote, urlsplit

        if not isinstance(url, str):
            raise InvalidArgument(f"a proxy is a URL string, not {type(url).__name__}")
        shown = redact_url(url)
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
            raise InvalidArgument(f"proxy URL {shown!r} contains spaces or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidArgument(
                f"proxy URL {shown!r} is malformed: {_no_secret(exc, url)}"
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            names = ", ".join(f"{s}://" for s in SCHEMES)
            raise InvalidArgument(f"proxy URL {shown!r}: the scheme must be one of {names}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidArgument(f"proxy URL {shown!r} has a path, query or fragment")
        host = parts.hostname
        if not host:
            raise InvalidArgument(f"proxy URL {shown!r} names no host")
        try:  # (as the server's name: A-labels, what DNS must see; no octet that is not UTF-8)
            host = idn.host_name(check_characters(host, "its host"), "its host")
        except InputError as exc:
            raise InvalidArgument(f"proxy URL {shown!r}: {exc}") from None
        if port is None:
            if scheme not in _DEFAULT_PORTS:
                raise InvalidArgument(f"proxy URL {shown!r} needs a port (http://host:3128)")
            port = _DEFAULT_PORTS[scheme]
        user = None if parts.username is None else unquote(parts.username, errors="strict")
        password = None if parts.password is None else unquote(parts.password, errors="strict")
        return cls(scheme, host, port, user or None, password)

    @property
    def remote_dns(self) -> bool:
        """Does the proxy resolve the server's name (socks5h, socks4a, http)?"""
        return SCHEMES[self.scheme]

    @property
    def reaches_ipv6(self) -> bool:
        """Can the proxy connect to an IPv6 address? SOCKS 4 carries IPv4 only."""
        return not self.scheme.startswith("socks4")

    @property
    def address(self) -> str:
        """``host:port`` of the proxy itself, as a message shows it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def secrets(self) -> Secrets:
        """The credentials' forms, to hide them in what the proxy says."""
        secrets = Secrets()
        if self.username:
            secrets.add_name(self.username)
        if self.password:
            secrets.add(self.password)
            if self.username is not None:
                secrets.add(_basic(self.username, self.password))
        return secrets

    def __str__(self) -> str:
        """The URL, its password replaced by ``****``."""
        auth = ""
        if self.username is not None:
            auth = self.username + (f":{REDACTED}" if self.password is not None else "") + "@"
        return f"{self.scheme}://{auth}{self.address}"

    def __repr__(self) -> str:
        return f"Proxy({str(self)!r})"


def _check(proxy: Proxy) -> None:
    """The rules each scheme puts on the URL's parts (RFC 1929 §2: 1-255 octets)."""
    shown = str(proxy)
    if proxy.scheme not in SCHEMES:
        raise InvalidArgument(f"proxy {shown!r}: unknown scheme {proxy.scheme!r}")
    check_port(proxy.port, f"proxy {shown!r}: port")
    for value in (proxy.host, proxy.username or "", proxy.password or ""):
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise InvalidArgument(f"proxy {shown!r}: control characters in the URL")
    user, password = proxy.username, proxy.password
    if proxy.scheme.startswith("socks4"):
        if password is not None:
            raise InvalidArgument(f"proxy {shown!r}: SOCKS 4 has a user name but no password")
        if user is not None and "\0" in user:
            raise InvalidArgument(f"proxy {shown!r}: NUL in the SOCKS 4 user name")
    elif proxy.scheme.startswith("socks5") and (user is not None or password is not None):
        if user is None or password is None:
            raise InvalidArgument(f"proxy {shown!r}: SOCKS 5 needs both a user name and a password")
        for what, value in (("user name", user), ("password", password)):
            if not 0 < len(value.encode("utf-8")) < 256:
                raise InvalidArgument(f"proxy {shown!r}: the {what} must be 1 to 255 octets")
    elif proxy.scheme == "http" and password is not None and user is None:
        raise InvalidArgument(f"proxy {shown!r}: a password without a user name")


def redact_url(url: str) -> str:
    """``url`` as an error may quote it: whatever stands before ``@`` after a
    ``:`` in the authority (the password) replaced by ``****``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if "@" not in url else REDACTED
    authority, slash, tail = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':' + REDACTED if colon else ''}@{hostport}{slash}{tail}"


def _no_secret(exc: Exception, url: str) -> str:
    """An error's text with the URL's password, if it quotes it, hidden."""
    text = str(exc)
    _, _, rest = url.partition("://")
    userinfo = rest.partition("/")[0].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return text.replace(password, REDACTED) if password else text


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# -- the handshakes -----------------------------------------------------------

#: What a handshake step waits for: given what of the answer has arrived, how
#: many more bytes may be read without reading past its end (0: it is whole).
Size = Callable[[bytes], int]
Steps = Generator[tuple[bytes, Size], bytes, None]


class Tunnel:
    """The client side of one proxy handshake, bytes in and bytes out.

    ::

        tunnel = Tunnel(proxy, "mx.example.org", 25)
        while not tunnel.established:
            send(tunnel.data_to_send())
            data = receive(tunnel.max_read())
            if not data:
                tunnel.closed()  # raises ProxyError
            tunnel.receive(data)

    :meth:`max_read` never asks for more than the proxy's answer still lacks,
    so not one byte of the server's own (its SMTP greeting) is read here:
    after the handshake the stream belongs to SMTP, as if connected directly.

    ``host`` is what the proxy is asked to connect to: a name only when the
    proxy resolves it (:attr:`Proxy.remote_dns`), else an IP address the
    transport resolved (``name`` is then the name it had). Every failure is a
    :class:`~smtpmail.errors.ProxyError` whose ``is_transient`` says whether
    trying again later may help; a destination this proxy cannot be asked for
    is an :class:`InvalidArgument`, raised by the constructor (before the
    connection to the proxy is made).
    """

    def __init__(self, proxy: Proxy, host: str, port: int, *, name: str | None = None) -> None:
        self.proxy = proxy
        #: The server as errors name it: ``name`` (as the caller gave it, when
        #: ``host`` is the address it was resolved to) and the port.
        self.destination = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if name is not None and name != host:
            self.destination = f"{name}:{port} ({host})"
        self._secrets = proxy.secrets()
        self._buffer = b""
        self.established = False
        steps = {
            "socks5": _socks5,
            "socks5h": _socks5,
            "socks4": _socks4,
            "socks4a": _socks4,
            "http": _http_connect,
        }[proxy.scheme]
        self._steps = steps(self, proxy, host, port)
        self._out, self._size = next(self._steps)

    def data_to_send(self) -> bytes:
        """The bytes to send now (each step's request once, then b"")."""
        out, self._out = self._out, b""
        return out

    def max_read(self) -> int:
        """How many bytes may be read now without reading past the proxy's answer."""
        return self._size(self._buffer)

    def receive(self, data: bytes) -> None:
        """Take bytes the proxy sent (at most :meth:`max_read` of them); moves on,
        or raises, when an answer is whole."""
        if self.established or len(data) > self.max_read():
            raise LocalProtocolError("more bytes than the proxy handshake asked for")
        self._buffer += data
        if self._size(self._buffer) == 0:
            answer, self._buffer = self._buffer, b""
            try:
                self._out, self._size = self._steps.send(answer)
            except StopIteration:
                self.established = True

    def closed(self) -> None:
        """The proxy closed the connection before the tunnel was open: raise why."""
        raise self.error(
            f"closed the connection during the handshake{self._partial()}", transient=True
        )

    def error(self, what: str, *, transient: bool) -> ProxyError:
        """The error for ``what`` the proxy did, naming it and the server (never the password)."""
        text = self._secrets.hide(f"proxy {self.proxy.address} ({self.proxy.scheme}) {what}")
        return ProxyError(f"{text} (tunnel to {self.destination})", transient=transient)

    def _partial(self) -> str:
        """What a SOCKS proxy's cut-off answer still says (its reply code)."""
        data = self._buffer
        if self.proxy.scheme.startswith("socks5") and len(data) >= 2 and data[0] == 5:
            return f" (reply code {data[1]})"
        return ""


def _fixed(n: int) -> Size:
    return lambda data: n - len(data)


def _socks5(tunnel: Tunnel, proxy: Proxy, host: str, port: int) -> Steps:
    """RFC 1928 §3 (method selection), RFC 1929 §2 (username/password), RFC 1928 §4-§6."""
    connect = _socks5_request(host, port)  # a destination it cannot name fails before a byte
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    answer = yield bytes([5, len(methods)]) + methods, _fixed(2)
    if answer[0] != 5:
        raise tunnel.error(f"is not a SOCKS 5 proxy (it answered {answer!r})", transient=False)
    method = answer[1]
    if method == 0xFF or method not in methods:
        raise tunnel.error(_socks5_method_refused(proxy, method), transient=False)
    if method == 2:
        assert proxy.username is not None and proxy.password is not None
        user, password = proxy.username.encode(), proxy.password.encode()
        request = bytes([1, len(user)]) + user + bytes([len(password)]) + password
        answer = yield request, _fixed(2)
        if answer[1] != 0:
            raise tunnel.error(
                f"refused the user name and password (status {answer[1]})", transient=False
            )
    answer = yield connect, _socks5_reply_size
    if answer[0] != 5:
        raise tunnel.error(f"sent a malformed reply {answer[:2]!r}", transient=False)
    if answer[1] != 0:
        text, transient = _SOCKS5_REPLIES.get(answer[1], ("failed", True))
        raise tunnel.error(f"{text} (SOCKS 5 reply {answer[1]})", transient=transient)
    if answer[3] not in (1, 3, 4):
        raise tunnel.error(f"sent an unknown address type {answer[3]}", transient=False)


def _socks5_method_refused(proxy: Proxy, method: int) -> str:
    if proxy.username is None:
        return "requires authentication: give a user name and password in the proxy URL"
    return f"accepts none of the authentication methods offered (it chose {method:#04x})"


def _socks5_request(host: str, port: int) -> bytes:
    """CONNECT to an IPv4 or IPv6 address, or to a domain name (RFC 1928 §4, §5)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = _a_labels(host)
        address = bytes([3, len(name)]) + name
    else:
        address = bytes([1 if ip.version == 4 else 4]) + ip.packed
    return b"\x05\x01\x00" + address + port.to_bytes(2, "big")


def _a_labels(host: str) -> bytes:
    """The name as the proxy is to resolve it: A-labels, letters, digits and hyphens."""
    from smtpmail.errors import InvalidAddress
    from smtpmail.protocol.idn import to_a_labels

    try:
        name = to_a_labels(host, "server name").encode("ascii")
    except InvalidAddress as exc:
        raise InvalidArgument(f"cannot ask a proxy for {host!r}: {exc}") from None
    if not 0 < len(name) < 256:
        raise InvalidArgument(f"server name {host!r} is too long for a proxy")
    return name


def _socks5_reply_size(data: bytes) -> int:
    """VER REP RSV ATYP BND.ADDR BND.PORT (RFC 1928 §6): the address says the length."""
    if len(data) < 2:
        return 2 - len(data)
    if data[0] != 5 or data[1] != 0:
        return 0  # malformed or a refusal: its code is all that matters
    if len(data) < 5:
        return 5 - len(data)
    atyp = data[3]
    size = {1: 10, 4: 22, 3: 7 + data[4]}.get(atyp, len(data))
    return size - len(data)  # (an unknown ATYP: the caller refuses the answer as it is)


#: SOCKS 5 reply codes (RFC 1928 §6): what they say, and whether a retry may help.
_SOCKS5_REPLIES = {
    1: ("failed (general SOCKS server failure)", True),
    2: ("refused the connection (not allowed by its rules)", False),
    3: ("could not reach the server (network unreachable)", True),
    4: ("could not reach the server (host unreachable)", True),
    5: ("could not connect to the server (connection refused)", True),
    6: ("could not connect to the server (TTL expired)", True),
    7: ("does not support CONNECT", False),
    8: ("does not support this address type", False),
}


def _socks4(tunnel: Tunnel, proxy: Proxy, host: str, port: int) -> Steps:
    """SOCKS 4 CONNECT, and the 4A extension: address 0.0.0.x, then the name."""
    user = (proxy.username or "").encode()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if proxy.scheme != "socks4a":
            raise InvalidArgument(
                f"a SOCKS 4 proxy needs an IPv4 address, not {host!r}; use socks4a://"
            ) from None
        address, name = b"\0\0\0\x01", _a_labels(host) + b"\0"
    else:
        if ip.version != 4:
            raise InvalidArgument(f"a SOCKS 4 proxy cannot reach the IPv6 address {host}")
        address, name = ip.packed, b""
    request = b"\x04\x01" + port.to_bytes(2, "big") + address + user + b"\0" + name
    answer = yield request, _fixed(8)
    if answer[0] not in (0, 4):  # 0 by the protocol; some proxies echo the version
        raise tunnel.error(f"is not a SOCKS 4 proxy (it answered {answer[:2]!r})", transient=False)
    code = answer[1]
    if code == 90:
        return
    if code in (92, 93):
        raise tunnel.error(f"refused the user id (SOCKS 4 reply {code})", transient=False)
    # 91 is both "refused by a rule" and "could not connect": a retry may help.
    raise tunnel.error(f"rejected or failed the connection (SOCKS 4 reply {code})", transient=True)


def _http_connect(tunnel: Tunnel, proxy: Proxy, host: str, port: int) -> Steps:
    """CONNECT host:port (RFC 9110 §9.3.6); any 2xx opens the tunnel."""
    target = f"[{host}]:{port}" if ":" in host else f"{_a_labels(host).decode()}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username is not None:
        lines.append(f"Proxy-Authorization: Basic {_basic(proxy.username, proxy.password or '')}")
    head = yield ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"), _http_head_size
    if not head.endswith(b"\r\n\r\n"):
        raise tunnel.error(f"sent a reply head longer than {MAX_HTTP_HEAD} octets", transient=False)
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code_text, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not (code_text.isdigit() and len(code_text) == 3):
        shown = status_line[:80].encode("ascii", "backslashreplace").decode()
        raise tunnel.error(f"is not an HTTP proxy (it answered {shown!r})", transient=False)
    code = int(code_text)
    if 200 <= code < 300:
        return
    reason = "".join(c for c in reason if c.isprintable())[:80]
    raise tunnel.error(_http_refusal(code, reason), transient=code >= 500 or code == 429)


def _http_refusal(code: int, reason: str) -> str:
    said = f"{code} {reason}".rstrip()
    if code in (401, 407):  # 407 by RFC 9110 §15.5.8; some proxies (tinyproxy) say 401
        return f"refused the credentials ({said})"
    return f"refused the tunnel ({said})"


def _http_head_size(data: bytes) -> int:
    """Up to the blank line that ends the head: as many bytes as could still
    complete ``CRLF CRLF``, so none after it is read."""
    if data.endswith(b"\r\n\r\n") or len(data) > MAX_HTTP_HEAD:
        return 0  # (too long: no proxy's answer to CONNECT is; refused as it is)
    for tail, wanted in ((b"\r\n\r", 1), (b"\r\n", 2), (b"\r", 3)):
        if data.endswith(tail):
            return wanted
    return 4
