"""Proxy URLs and the sans-IO proxy handshakes (smtpmail.protocol.proxy), with no sockets.

What each handshake sends is checked byte for byte against RFC 1928/1929, the
SOCKS 4/4A memos and RFC 9110 §9.3.6; what it makes of each answer, table by
table. The real proxies are in test_proxy.py.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpmail import InvalidArgument, Proxy, ProxyError
from smtpmail.protocol.proxy import MAX_HTTP_HEAD, Tunnel

SECRET = "s3cret-pass"

# -- URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fields", "remote_dns"),
    [
        ("socks5://127.0.0.1", ("socks5", "127.0.0.1", 1080, None, None), False),
        ("socks5h://u:p@proxy.example:1081", ("socks5h", "proxy.example", 1081, "u", "p"), True),
        ("SOCKS5H://[::1]:9050", ("socks5h", "::1", 9050, None, None), True),
        ("socks4://bob@10.0.0.1", ("socks4", "10.0.0.1", 1080, "bob", None), False),
        ("socks4a://h:1", ("socks4a", "h", 1, None, None), True),
        ("http://h:3128", ("http", "h", 3128, None, None), True),
        ("http://u%40x:p%3A%2F@h:8080/", ("http", "h", 8080, "u@x", "p:/"), True),
    ],
)
def test_parse(url: str, fields: tuple[object, ...], remote_dns: bool) -> None:
    proxy = Proxy.parse(url)
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.password) == fields
    assert proxy.remote_dns is remote_dns


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://h:21", "scheme must be one of"),
        ("https://h:443", "scheme must be one of"),
        ("h:1080", "scheme must be one of"),
        ("socks5://", "names no host"),
        ("socks5://h:0", "out of range"),
        (f"socks5://u:{SECRET}@h:99999", "malformed"),
        (f"socks5://u:{SECRET}@h:port", "malformed"),
        ("socks5://h/path", "path, query or fragment"),
        ("socks5://h?x=1", "path, query or fragment"),
        ("socks5://u@h", "both a user name and a password"),
        (f"socks5://:{SECRET}@h", "both a user name and a password"),
        (f"socks5://u:{SECRET}%00@h", "control characters"),
        (f"socks5://{'u' * 256}:{SECRET}@h", "1 to 255 octets"),
        (f"socks4://u:{SECRET}@h", "no password"),
        ("http://h", "needs a port"),
        (f"http://:{SECRET}@h:1", "password without a user name"),
        (f"socks5://u:{SECRET} x@h", "spaces or control characters"),
    ],
)
def test_bad_url_is_refused_without_the_password(url: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says) as caught:
        Proxy.parse(url)
    assert SECRET not in str(caught.value)


def test_repr_str_and_pickle_hide_nothing_but_the_password() -> None:
    proxy = Proxy.parse(f"socks5://user:{SECRET}@h:1080")
    assert str(proxy) == "socks5://user:****@h:1080"
    assert SECRET not in repr(proxy)
    assert pickle.loads(pickle.dumps(proxy)) == proxy  # (the outbox worker may pickle options)
    assert Proxy.of(proxy) is proxy


@given(st.text(max_size=40), st.text(st.characters(categories=["L", "N"]), min_size=8))
def test_any_string_parses_or_raises_invalid_argument(text: str, password: str) -> None:
    """No other exception, whatever the text; and a refused URL's error never
    quotes its password."""
    for url in (text, f"socks5://{text}", f"socks5://u:{password}@{text}"):
        try:
            proxy = Proxy.parse(url)
        except InvalidArgument as exc:
            assert password not in str(exc) or password in text
        else:
            assert proxy.scheme in ("socks5", "socks5h", "socks4", "socks4a", "http")


# -- handshakes ---------------------------------------------------------------


def feed(tunnel: Tunnel, answer: bytes) -> bytes:
    """Give ``tunnel`` what it asks for of ``answer``; return the rest."""
    while answer and not tunnel.established:
        assert tunnel.max_read() >= 1, "asked for nothing while unfinished"
        n = min(tunnel.max_read(), len(answer))
        tunnel.receive(answer[:n])
        answer = answer[n:]
    return answer


def run(tunnel: Tunnel, answers: list[bytes]) -> list[bytes]:
    """Drive ``tunnel`` with the proxy's ``answers`` (each cut into single bytes,
    as a slow proxy sends them); return what it sent."""
    sent = [tunnel.data_to_send()]
    for answer in answers:
        for i in range(len(answer)):
            assert tunnel.max_read() >= 1, "asked for nothing while an answer is short"
            tunnel.receive(answer[i : i + 1])
        sent.append(tunnel.data_to_send())
    return [s for s in sent if s]


SOCKS5_OK = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


@pytest.mark.parametrize(
    ("url", "host", "answers", "sent"),
    [
        (  # no authentication, an IPv4 address (RFC 1928 §4: ATYP 1)
            "socks5://p",
            "192.0.2.1",
            [b"\x05\x00", SOCKS5_OK],
            [b"\x05\x01\x00", b"\x05\x01\x00\x01\xc0\x00\x02\x01\x00\x19"],
        ),
        (  # remote DNS: the name goes (ATYP 3), in A-labels; the reply's address is a name
            "socks5h://p",
            "bücher.example",
            [b"\x05\x00", b"\x05\x00\x00\x03\x03abc\x00\x19"],
            [b"\x05\x01\x00", b"\x05\x01\x00\x03\x15xn--bcher-kva.example\x00\x19"],
        ),
        (  # an IPv6 address (ATYP 4), and a bound IPv6 address in the reply
            "socks5://p",
            "2001:db8::1",
            [b"\x05\x00", b"\x05\x00\x00\x04" + bytes(16) + b"\x00\x19"],
            [
                b"\x05\x01\x00",
                b"\x05\x01\x00\x04\x20\x01\x0d\xb8" + bytes(11) + b"\x01\x00\x19",
            ],
        ),
        (  # username/password (RFC 1929 §2): offered, chosen, sent as octets
            "socks5h://us%C3%A9r:pw@p",
            "mx.example",
            [b"\x05\x02", b"\x01\x00", SOCKS5_OK],
            [
                b"\x05\x02\x00\x02",
                b"\x01\x05us\xc3\xa9r\x02pw",
                b"\x05\x01\x00\x03\x0amx.example\x00\x19",
            ],
        ),
        (  # the proxy may skip authentication even when it was offered
            "socks5h://u:pw@p",
            "mx.example",
            [b"\x05\x00", SOCKS5_OK],
            [b"\x05\x02\x00\x02", b"\x05\x01\x00\x03\x0amx.example\x00\x19"],
        ),
        (  # SOCKS 4: an IPv4 address and the user id
            "socks4://bob@p",
            "192.0.2.1",
            [b"\x00\x5a\x00\x00\x00\x00\x00\x00"],
            [b"\x04\x01\x00\x19\xc0\x00\x02\x01bob\x00"],
        ),
        (  # SOCKS 4A: 0.0.0.1, then the name after the user id
            "socks4a://p",
            "mx.example",
            [b"\x00\x5a\x00\x00\x00\x00\x00\x00"],
            [b"\x04\x01\x00\x19\x00\x00\x00\x01\x00mx.example\x00"],
        ),
        (  # HTTP CONNECT with Basic credentials (RFC 7617)
            "http://u:p@p:3128",
            "mx.example",
            [b"HTTP/1.1 200 Connection established\r\nX: y\r\n\r\n"],
            [
                b"CONNECT mx.example:25 HTTP/1.1\r\nHost: mx.example:25\r\n"
                b"Proxy-Authorization: Basic dTpw\r\n\r\n"
            ],
        ),
        (  # an IPv6 literal in brackets; HTTP/1.0 answers are fine
            "http://p:3128",
            "2001:db8::1",
            [b"HTTP/1.0 200 OK\r\n\r\n"],
            [b"CONNECT [2001:db8::1]:25 HTTP/1.1\r\nHost: [2001:db8::1]:25\r\n\r\n"],
        ),
    ],
)
def test_handshake_sends(url: str, host: str, answers: list[bytes], sent: list[bytes]) -> None:
    tunnel = Tunnel(Proxy.parse(url), host, 25)
    assert run(tunnel, answers) == sent
    assert tunnel.established


@pytest.mark.parametrize("url", ["socks5h://p", "socks4a://p", "http://p:1"])
def test_not_one_byte_past_the_answer_is_asked_for(url: str) -> None:
    """The server's greeting may come in the proxy's last segment: it must stay
    in the stream for SMTP. max_read never reaches past the answer."""
    answer = {
        "socks5h": [b"\x05\x00", SOCKS5_OK],
        "socks4a": [b"\x00\x5a" + bytes(6)],
        "http": [b"HTTP/1.1 200 OK\r\n\r\n"],
    }[url.split(":", maxsplit=1)[0]]
    tunnel = Tunnel(Proxy.parse(url), "mx.example", 25)
    tunnel.data_to_send()
    *before, last = answer
    for part in before:
        assert feed(tunnel, part) == b""
        tunnel.data_to_send()
    assert feed(tunnel, last + b"220 mx ESMTP\r\n") == b"220 mx ESMTP\r\n"
    assert tunnel.established


@pytest.mark.parametrize(
    ("url", "answers", "says", "transient"),
    [
        ("socks5://p", [b"\x05\xff"], "requires authentication", False),
        ("socks5://u:p@p", [b"\x05\xff"], "none of the authentication methods", False),
        ("socks5://u:p@p", [b"\x05\x02", b"\x01\x01"], "refused the user name and password", False),
        ("socks5://p", [b"\x05\x00", b"\x05\x01"], "general SOCKS server failure", True),
        ("socks5://p", [b"\x05\x00", b"\x05\x02"], "not allowed by its rules", False),
        ("socks5://p", [b"\x05\x00", b"\x05\x03"], "network unreachable", True),
        ("socks5://p", [b"\x05\x00", b"\x05\x04"], "host unreachable", True),
        ("socks5://p", [b"\x05\x00", b"\x05\x05"], "connection refused", True),
        ("socks5://p", [b"\x05\x00", b"\x05\x07"], "does not support CONNECT", False),
        ("socks5://p", [b"\x05\x00", b"\x05\x08"], "address type", False),
        ("socks5://p", [b"\x05\x00", b"\x05\x00\x00\x09\x00"], "unknown address type", False),
        ("socks5://p", [b"HT"], "not a SOCKS 5 proxy", False),
        ("socks5://p", [b"\x05\x00", b"\x04\x00"], "malformed reply", False),
        ("socks4://p", [b"\x00\x5b" + bytes(6)], "rejected or failed", True),
        ("socks4://u@p", [b"\x00\x5d" + bytes(6)], "refused the user id", False),
        ("socks4://p", [b"HTTP/1.1"], "not a SOCKS 4 proxy", False),
        ("http://p:1", [b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"], "407", False),
        ("http://p:1", [b"HTTP/1.0 401 Unauthorized\r\n\r\n"], "refused the credentials", False),
        ("http://p:1", [b"HTTP/1.1 403 Access violation\r\n\r\n"], "refused the tunnel", False),
        ("http://p:1", [b"HTTP/1.1 502 Bad Gateway\r\n\r\n"], "502 Bad Gateway", True),
        ("http://p:1", [b"HTTP/1.1 503 Unavailable\r\n\r\n"], "503", True),
        ("http://p:1", [b"\x05\x00\r\n\r\n"], "not an HTTP proxy", False),
        ("http://p:1", [b"HTTP/1.1 200 OK\r\n" + b"X" * MAX_HTTP_HEAD], "longer than", False),
    ],
)
def test_refusals(url: str, answers: list[bytes], says: str, transient: bool) -> None:
    tunnel = Tunnel(Proxy.parse(url), "192.0.2.1", 25)
    with pytest.raises(ProxyError, match=says) as caught:
        for answer in answers:
            tunnel.data_to_send()
            feed(tunnel, answer)
    assert caught.value.is_transient is transient
    assert "192.0.2.1:25" in str(caught.value)
    assert isinstance(pickle.loads(pickle.dumps(caught.value)), ProxyError)
    assert pickle.loads(pickle.dumps(caught.value)).is_transient is transient


def test_closed_mid_answer_is_transient_and_says_the_code() -> None:
    tunnel = Tunnel(Proxy.parse("socks5://p"), "192.0.2.1", 25)
    tunnel.data_to_send()
    tunnel.receive(b"\x05")
    with pytest.raises(ProxyError, match="closed the connection during the handshake") as caught:
        tunnel.closed()
    assert caught.value.is_transient


def test_errors_hide_what_the_proxy_echoes_of_the_credentials() -> None:
    tunnel = Tunnel(Proxy.parse(f"http://user:{SECRET}@p:1"), "192.0.2.1", 25)
    tunnel.data_to_send()
    with pytest.raises(ProxyError, match="407") as caught:
        feed(tunnel, f"HTTP/1.1 407 no {SECRET} here\r\n\r\n".encode())
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "host", "error"),
    [
        ("socks4://p", "mx.example", "use socks4a"),  # SOCKS 4 takes no names
        ("socks4://p", "2001:db8::1", "IPv6"),
        ("socks5h://p", "bad_name!", "malformed domain"),
    ],
)
def test_destination_the_proxy_cannot_be_asked_for(url: str, host: str, error: str) -> None:
    """Refused when the tunnel is made: before the connection to the proxy."""
    with pytest.raises(InvalidArgument, match=error):
        Tunnel(Proxy.parse(url), host, 25)


@given(
    st.sampled_from(["socks5://p", "socks5h://u:pw@p", "socks4a://u@p", "http://u:pw@p:1"]),
    st.lists(st.binary(min_size=1, max_size=40), max_size=8),
)
def test_any_answer_opens_the_tunnel_or_raises_proxy_error(url: str, answers: list[bytes]) -> None:
    """Whatever a proxy sends: the tunnel opens, fails with a ProxyError, or asks
    for more; it never asks for nothing while unfinished, nor reads past its answer."""
    tunnel = Tunnel(Proxy.parse(url), "mx.example", 25)
    try:
        for answer in answers:
            tunnel.data_to_send()
            feed(tunnel, answer)
    except ProxyError as exc:
        assert exc.is_transient in (True, False)
