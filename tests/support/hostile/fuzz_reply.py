"""atheris harness for the reply parser; run by test_hostile_fuzz.py for a bounded time.

The first input byte picks a chunk size, so the parser is fed the rest in
pieces as a socket would. Only RemoteProtocolError may escape; the buffer
must stay within the parser's limits. Usage:
``python fuzz_reply.py -max_total_time=20 -rss_limit_mb=512``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from smtpmail.errors import RemoteProtocolError
    from smtpmail.protocol.reply import Reply, ReplyParser

MAX_LINE, MAX_REPLY = 256, 2048


def one_input(data: bytes) -> None:
    if not data:
        return
    step = data[0] % 32 + 1
    stream = data[1:]
    parser = ReplyParser(max_line=MAX_LINE, max_reply=MAX_REPLY)
    try:
        for i in range(0, len(stream), step):
            parser.feed(stream[i : i + step])
            while (reply := parser.maybe_next_reply()) is not None:
                assert isinstance(reply, Reply)
                assert 200 <= reply.code <= 559
                str(reply)
                _ = reply.enhanced_status
            assert parser.buffered <= MAX_REPLY + MAX_LINE + step
    except RemoteProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
