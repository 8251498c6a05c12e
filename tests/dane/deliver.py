"""smtpmail's side of the DANE world: ``python deliver.py sync|async [FLAG...] RCPT...``.

Run in the world's namespace. Flags: ``--requiretls`` (REQUIRETLS, RFC 8689),
``--tls-required-no`` (the message carries ``TLS-Required: No``).

Delivers one message with :func:`smtpmail.deliver` (or ``deliver_async``),
the resolver being the world's Unbound on 127.0.0.1 (loopback: trusted to
validate, so DANE is on by default), and prints the report as JSON.
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
    kw["require_tls_extension"] = "--requiretls" in flags
    if mode == "sync":
        report = smtpmail.deliver(message, "sender@client.test", recipients, **kw)
    else:
        report = asyncio.run(
            smtpmail.deliver_async(message, "sender@client.test", recipients, **kw)
        )
    print(json.dumps(report.as_dict()))


if __name__ == "__main__":
    main()
