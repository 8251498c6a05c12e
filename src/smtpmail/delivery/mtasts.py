"""MTA-STS (RFC 8461): find a domain's policy, fetch it over HTTPS, cache it.

The policy is announced by the ``_mta-sts.<domain>`` TXT record
(``v=STSv1; id=...``) and served at
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` with a certificate that
must verify, no redirects, ``text/plain``, at most 64 KiB (§3.2, §3.3). It is
cached for its ``max_age`` and refetched only when the TXT ``id`` changes
(§5.1); when the TXT lookup or the fetch fails, an unexpired cached policy
still applies, so an attacker who blocks them cannot downgrade delivery.

``MTASTS(ca_file=..., port=...)`` lets tests point the fetch at a local HTTPS
server: the host ``mta-sts.<domain>`` is looked up with the delivery's own
:class:`~smtpmail.delivery.resolver.Resolver` and its certificate checked
against ``ca_file`` (or ``ssl_context``) instead of the system store.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable

from smtpmail._log import Logger
from smtpmail._record import Frozen
from smtpmail.delivery.resolver import Resolver
from smtpmail.errors import ConnectError, DNSError, SMTPError
from smtpmail.transport.stream import as_stream, connect_tcp
from smtpmail.transport.tls import TLSOptions

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing

if TYPE_CHECKING:
    from smtpmail.transport.stream import Connector

__all__ = ["MTASTS", "PolicyCache", "PolicyError", "STSPolicy", "parse_policy", "parse_txt"]

log = Logger("smtpmail.delivery")  # logging itself is imported when needed (_log)

MAX_POLICY_SIZE = 64 * 1024  # §3.3
MAX_AGE_LIMIT = 31_557_600  # §3.2: about a year
WELL_KNOWN = "/.well-known/mta-sts.txt"


class PolicyError(ValueError):
    """A TXT record or a policy that does not parse, or a fetch that failed."""


class STSPolicy(Frozen):
    """A parsed policy: ``mode`` is ``enforce``, ``testing`` or ``none``."""

    mode: str
    mx: tuple[str, ...]
    max_age: int
    id: str = ""

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    def matches(self, host: str) -> bool:
        """Does an MX host name match one of the policy's ``mx`` patterns (§4.1)?"""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                # A wildcard stands for exactly one leftmost label.
                head, _, rest = host.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_txt(records: list[str]) -> str | None:
    """The policy id from the ``_mta-sts`` TXT records; None when there is no valid one.

    Exactly one record must start with ``v=STSv1`` (§3.1); several mean no policy.
    """
    # The version field is the first, exactly (v=STSv10 is another version).
    found = [r for r in records if r.split(";", 1)[0].rstrip(" \t") == "v=STSv1"]
    if len(found) != 1:
        return None
    fields = dict(part.strip().split("=", 1) for part in found[0].split(";") if "=" in part.strip())
    policy_id = fields.get("id", "")
    # sts-id = 1*32(ALPHA / DIGIT): ASCII only (str.isalnum takes any script).
    if not policy_id.isascii() or not policy_id.isalnum() or len(policy_id) > 32:
        return None
    return policy_id


def parse_policy(text: str, policy_id: str = "") -> STSPolicy:
    """Parse a policy body (§3.2); PolicyError when it is invalid."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if not raw.strip():
            continue
        key, sep, value = raw.partition(":")
        if not sep:
            raise PolicyError(f"malformed policy line {raw[:60]!r}")
        key, value = key.strip().lower(), value.strip()
        if key == "mx":
            mx.append(value.rstrip(".").lower())
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("the policy's version is not STSv1")
    mode = fields.get("mode", "")
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"unknown policy mode {mode!r}")
    age = fields.get("max_age", "")
    if not age.isdigit() or len(age) > 10:
        raise PolicyError(f"bad max_age {age!r}")
    if mode != "none" and not mx:
        raise PolicyError("the policy lists no mx")
    return STSPolicy(mode, tuple(mx), min(int(age), MAX_AGE_LIMIT), policy_id)


class PolicyCache:
    """Policies by domain, each kept until its max_age runs out. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[STSPolicy, float]] = {}

    def get(self, domain: str) -> STSPolicy | None:
        with self._lock:
            entry = self._entries.get(domain)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._entries[domain]
                return None
            return entry[0]

    def put(self, domain: str, policy: STSPolicy) -> None:
        with self._lock:
            self._entries[domain] = (policy, self._clock() + policy.max_age)

    def __len__(self) -> int:
        return len(self._entries)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a host name at an address found by our resolver, SNI and checks by name."""

    def __init__(  # noqa: PLR0917 (http.client's positional order, and ours)
        self,
        host: str,
        address: str,
        port: int,
        context: ssl.SSLContext,
        timeout: float,
        connect: Connector | None = None,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context
        self._deadline = timeout
        self._connector = connect

    def connect(self) -> None:
        # Through the network seam, as every connection the product makes
        # (and through the delivery's proxy, when it has one).
        connector: Connector = self._connector or connect_tcp
        stream = as_stream(connector(self._address, self.port, timeout=self._deadline,
                                     source_address=None, family=0))  # fmt: skip
        try:
            stream.start_tls(self._tls, self.host, self._deadline, TLSOptions())
        except BaseException:
            stream.close()
            raise
        self.sock = stream.get_extra_info("socket")


class MTASTS:
    """Looks up, fetches and caches MTA-STS policies.

    ``ca_file`` / ``ssl_context``: how the policy host's certificate is
    verified (the system store by default; verification is never off).
    ``port``: where the policy host listens (443). One instance may be shared
    by many deliveries, so its cache spans them.
    """

    def __init__(
        self,
        *,
        cache: PolicyCache | None = None,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 443,
        timeout: float = 30.0,
    ) -> None:
        self.cache = cache if cache is not None else PolicyCache()
        if ssl_context is None:
            ssl_context = ssl.create_default_context(cafile=ca_file)
        # §3.3: the fetch is over HTTPS with a certificate that verifies.
        ssl_context.check_hostname = True
        ssl_context.verify_mode = ssl.CERT_REQUIRED
        self.ssl_context = ssl_context
        self.port = port
        self.timeout = timeout

    def policy_for(
        self, domain: str, resolver: Resolver, *, connect: Connector | None = None
    ) -> STSPolicy | None:
        """The policy that applies to ``domain`` now, or None (§5.1). ``connect``:
        the :class:`~smtpmail.transport.stream.Connector` for the HTTPS fetch
        (a proxy's; a direct TCP connection by default)."""
        cached = self.cache.get(domain)
        try:
            policy_id = parse_txt(resolver.txt(f"_mta-sts.{domain}"))
        except DNSError as exc:
            log.info("MTA-STS TXT lookup for %s failed: %s", domain, exc)
            return cached
        if policy_id is None:
            return cached
        if cached is not None and cached.id == policy_id:
            return cached
        try:
            policy = parse_policy(self.fetch(domain, resolver, connect=connect), policy_id)
        except (PolicyError, SMTPError, OSError, http.client.HTTPException) as exc:
            log.warning("MTA-STS policy fetch for %s failed: %s", domain, exc)
            return cached
        self.cache.put(domain, policy)
        log.info("MTA-STS policy for %s: mode=%s mx=%s", domain, policy.mode, policy.mx)
        return policy

    def fetch(self, domain: str, resolver: Resolver, *, connect: Connector | None = None) -> str:
        """GET the policy text; PolicyError unless 200, text/plain and small enough."""
        host = f"mta-sts.{domain}"
        last: Exception | None = None
        for address in resolver.addresses(host):
            conn = _PinnedHTTPS(host, address, self.port, self.ssl_context, self.timeout, connect)
            try:
                return self._get(conn)
            except (OSError, ConnectError) as exc:  # the next address (a proxy's failure too),
                last = exc  # but after a certificate failure none
                if isinstance(exc, ssl.SSLError):
                    raise
            finally:
                conn.close()
        raise PolicyError(f"cannot reach {host}: {last}")

    @staticmethod
    def _get(conn: http.client.HTTPSConnection) -> str:
        conn.request("GET", WELL_KNOWN, headers={"Accept": "text/plain"})
        response = conn.getresponse()
        # §3.3: no redirects are followed.
        if response.status != 200:
            raise PolicyError(f"policy fetch answered HTTP {response.status}")
        kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "text/plain":
            raise PolicyError(f"policy served as {kind or 'no type'}, not text/plain")
        body = response.read(MAX_POLICY_SIZE + 1)
        if len(body) > MAX_POLICY_SIZE:
            raise PolicyError("policy larger than 64 KiB")
        return body.decode("utf-8", "replace")
