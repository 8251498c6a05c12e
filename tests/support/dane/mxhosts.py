"""The MX hosts of the DANE world: aiosmtpd on port 25 of several loopback addresses.

Run inside the world's network namespace (``ip netns exec``) as
``python mxhosts.py CONFIG.json``; CONFIG lists ``{"address", "name", "cert",
"key", "starttls", "requiretls"}`` per host and a ``spool`` directory. Every
message a host takes is written to ``spool/<address>/<n>.json`` (envelope,
whether the session ran under TLS, whether MAIL FROM said REQUIRETLS);
"ready" on stdout once every host listens. aiosmtpd knows no REQUIRETLS
(RFC 8689): :class:`RequireTLSServer` adds it, offered after STARTTLS only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

_count = itertools.count()


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "requiretls": getattr(session, "requiretls", False),
        }
        path = self.folder / f"{next(_count)}.json"
        path.with_suffix(".tmp").write_text(json.dumps(record))
        path.with_suffix(".tmp").rename(path)
        return "250 2.0.0 OK"


class RequireTLSServer(SMTP):
    """aiosmtpd offering REQUIRETLS over TLS and taking the MAIL FROM parameter."""

    def _offers(self) -> bool:
        return self.session is not None and self.session.ssl is not None

    async def push(self, status: Any) -> None:
        # The last EHLO line is "250 HELP": REQUIRETLS goes before it, over TLS.
        if isinstance(status, str) and status == "250 HELP" and self._offers():
            await super().push("250-REQUIRETLS")
        await super().push(status)

    async def smtp_MAIL(self, arg: Any) -> None:
        if arg and self._offers():
            words = arg.split()
            kept = [w for w in words if w.upper() != "REQUIRETLS"]
            self.session.requiretls = len(kept) != len(words)  # type: ignore[union-attr]
            arg = " ".join(kept)
        await super().smtp_MAIL(arg)


class HostController(Controller):
    def __init__(self, *args: Any, requiretls: bool, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.requiretls = requiretls

    def factory(self) -> SMTP:
        if not self.requiretls:
            return super().factory()
        return RequireTLSServer(self.handler, **self.SMTP_kwargs)


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    controllers = []
    for host in config["hosts"]:
        context = None
        if host["starttls"]:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(host["cert"], host["key"])
        controller = HostController(
            Spool(Path(config["spool"]) / host["address"]),
            requiretls=host.get("requiretls", False),
            hostname=host["address"],
            port=25,
            server_hostname=host["name"],
            tls_context=context,
            require_starttls=False,
            ready_timeout=20,
        )
        controller.start()
        controllers.append(controller)
    print("ready", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        for controller in controllers:
            controller.stop()


if __name__ == "__main__":
    main()
