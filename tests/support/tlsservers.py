"""Servers for the TLS and AUTH tests: trustme certificates, and aiosmtpd with
STARTTLS/AUTH or implicit TLS (faults: tests/support/hostile/scripted.py).
"""

from __future__ import annotations

import base64
import datetime
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from support.servers import Recorder, RecordingServer

USER = "üser@example.org"
PASSWORD = "pä$$ wörd-s3cret"  # non-ASCII on purpose: UTF-8 on the wire


class Certs:
    """A trustme CA, its PEM file, and server contexts made from it."""

    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA()
        self.ca_file = str(tmp / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.leaf = self.ca.issue_cert("localhost", "127.0.0.1", "mail.example.org")

    def leaf_files(self, tmp: Path) -> tuple[str, str]:
        """The server certificate chain and key as PEM files (for servers not in Python)."""
        cert, key = tmp / "server.pem", tmp / "server.key"
        with open(cert, "wb") as f:
            for pem in self.leaf.cert_chain_pems:
                f.write(pem.bytes())
        self.leaf.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)

    def server_context(self, leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (leaf or self.leaf).configure_cert(ctx)
        return ctx

    def expired(self) -> trustme.LeafCert:
        now = datetime.datetime.now(datetime.UTC)
        return self.ca.issue_cert(
            "127.0.0.1",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )


def authenticator(user: str = USER, password: str = PASSWORD) -> Callable[..., AuthResult]:
    def check(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


class SaslRecorder(Recorder):
    """A Recorder that also serves SCRAM (through the independent ``scramp``
    package) and OAUTHBEARER (RFC 7628) to aiosmtpd."""

    token: str = "good-token"
    iterations: int = 4096
    scram_logins: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.scram_logins = []

    async def auth_SCRAM__SHA__256(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._scram("SCRAM-SHA-256", server, args)

    async def auth_SCRAM__SHA__1(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._scram("SCRAM-SHA-1", server, args)

    async def _scram(self, name: str, server: SMTP, args: list[str]) -> AuthResult:
        from scramp import ScramException, ScramMechanism

        mech = ScramMechanism(name)
        info = mech.make_auth_info(PASSWORD, iteration_count=self.iterations)
        users: list[str] = []

        def lookup(user: str) -> Any:
            users.append(user)
            return info

        scram = mech.make_server(lookup)
        first = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        if not isinstance(first, bytes):
            return AuthResult(success=False, handled=False)
        try:
            scram.set_client_first(first.decode())
            final = await server.challenge_auth(scram.get_server_first())
            if not isinstance(final, bytes):
                return AuthResult(success=False, handled=False)
            scram.set_client_final(final.decode())
        except ScramException:
            return AuthResult(success=False, handled=False)
        if users != [USER]:
            return AuthResult(success=False, handled=False)
        empty = await server.challenge_auth(scram.get_server_final())
        if empty != b"":
            return AuthResult(success=False, handled=False)
        self.scram_logins.append(name)
        return AuthResult(success=True)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        message = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        gs2, _, rest = message.partition("\x01")
        fields = dict(kv.split("=", 1) for kv in rest.split("\x01") if "=" in kv)
        if gs2 == f"n,a={USER}," and fields.get("auth") == f"Bearer {self.token}":
            return AuthResult(success=True)
        error = b'{"status":"invalid_token","scope":"mail"}'
        answer = await server.challenge_auth(error)
        if answer != b"\x01":
            return AuthResult(success=False, handled=False, message="501 5.5.2 bad answer")
        return AuthResult(success=False, handled=False)


class TLSServer(RecordingServer):
    """RecordingServer with implicit TLS (``implicit=context``) or STARTTLS/AUTH kwargs;
    ``handler`` replaces the Recorder (e.g. a :class:`SaslRecorder`)."""

    def __init__(
        self,
        implicit: ssl.SSLContext | None = None,
        handler: Recorder | None = None,
        **smtp_kwargs: Any,
    ) -> None:
        super().__init__(**smtp_kwargs)
        if implicit is not None:
            self._controller.ssl_context = implicit
        if handler is not None:
            self.handler = handler
            self._controller.handler = handler
