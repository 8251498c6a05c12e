"""smtpmail's side of the DANE world: ``python deliver.py sync|async RCPT...`` in the namespace.

Delivers one message with :func:`smtpmail.deliver` (or ``deliver_async``),
the resolver being the world's Unbound on 127.0.0.1 (loopback: trusted to
validate, so DANE is on by default), and prints the report as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

import smtpmail

MESSAGE = b"From: sender@client.test\r\nSubject: dane\r\n\r\nDANE test\r\n"


def main() -> None:
    mode, recipients = sys.argv[1], sys.argv[2:]
    kw = {"nameservers": ["127.0.0.1"], "mta_sts": False, "timeout": 20.0}
    if mode == "sync":
        report = smtpmail.deliver(MESSAGE, "sender@client.test", recipients, **kw)
    else:
        report = asyncio.run(
            smtpmail.deliver_async(MESSAGE, "sender@client.test", recipients, **kw)
        )
    print(json.dumps(report.as_dict()))


if __name__ == "__main__":
    main()
