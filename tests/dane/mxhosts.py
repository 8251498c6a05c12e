"""The MX hosts of the DANE world: aiosmtpd on port 25 of several loopback addresses.

Run inside the world's network namespace (``ip netns exec``) as
``python mxhosts.py CONFIG.json``; CONFIG lists ``{"address", "name", "cert",
"key", "starttls"}`` per host and a ``spool`` directory. Every message a host
takes is written to ``spool/<address>/<n>.json`` (envelope, and whether the
session ran under TLS); "ready" on stdout once every host listens.
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
        }
        path = self.folder / f"{next(_count)}.json"
        path.with_suffix(".tmp").write_text(json.dumps(record))
        path.with_suffix(".tmp").rename(path)
        return "250 2.0.0 OK"


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    controllers = []
    for host in config["hosts"]:
        context = None
        if host["starttls"]:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(host["cert"], host["key"])
        controller = Controller(
            Spool(Path(config["spool"]) / host["address"]),
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
