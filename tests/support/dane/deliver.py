"""smtpmail's side of the DANE world: ``python deliver.py sync|async|outbox [FLAG...] RCPT...``.

Run in the world's namespace. Flags: ``--requiretls`` (REQUIRETLS, RFC 8689),
``--tls-required-no`` (the message carries ``TLS-Required: No``).

Delivers one message with :func:`smtpmail.deliver` (or ``deliver_async``),
the resolver being the world's Unbound on 127.0.0.1 (loopback: trusted to
validate, so DANE is on by default), and prints the report as JSON.
``outbox``: the message is queued in a folder outbox and sent by its worker
(``Worker(direct=...)``); each recipient's state is printed in the same shape.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import smtpmail

MESSAGE = b"From: sender@client.test\r\nSubject: dane\r\n\r\nDANE test\r\n"


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    flags = {a for a in args if a.startswith("--")}
    recipients = [a for a in args if not a.startswith("--")]
    message = MESSAGE
    if "--tls-required-no" in flags:
        message = b"TLS-Required: No\r\n" + MESSAGE
    kw: dict[str, Any] = {"nameservers": ["127.0.0.1"], "mta_sts": False, "timeout": 20.0}
    if mode == "outbox":
        envelope = smtpmail.Envelope(
            "sender@client.test", recipients, requiretls="--requiretls" in flags
        )
        print(json.dumps(_through_outbox(message, envelope, kw)))
        return
    kw["require_tls_extension"] = "--requiretls" in flags
    if mode == "sync":
        report = smtpmail.deliver(message, "sender@client.test", recipients, **kw)
    else:
        report = asyncio.run(
            smtpmail.deliver_async(message, "sender@client.test", recipients, **kw)
        )
    print(json.dumps(report.as_dict()))


def _through_outbox(
    message: bytes, envelope: smtpmail.Envelope, direct: dict[str, Any]
) -> dict[str, Any]:
    import tempfile

    from smtpmail.outbox import Outbox, Worker

    with tempfile.TemporaryDirectory() as folder, Outbox(folder) as box:
        queued = box.add(message, envelope=envelope)
        Worker(box, direct=direct).run()
        states = box.load(queued.id).recipients
    return {
        "recipients": [
            {"recipient": r.address, "status": r.state.value, "text": r.reply} for r in states
        ]
    }


if __name__ == "__main__":
    main()
