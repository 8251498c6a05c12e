"""The fields a mailer adds to a message that lacks them: Date and Message-ID.

RFC 5322 §3.6 requires a Date (§3.6.1) and recommends a Message-ID (§3.6.4);
the composer adds both, and ``sendmail`` adds them to a message it is given
without them, as sendmail(8), Postfix and msmtp do. Made here without the
email package (``email.utils`` loads socket, datetime, random and urllib:
half of a ``sendmail`` run's instructions for two lines), in the forms
``email.utils.formatdate(localtime=True)`` and ``make_msgid()`` write.
"""

from __future__ import annotations

import os
import time

__all__ = ["date", "message_id"]

#: RFC 5322 §3.3's day and month names: English, whatever the locale says.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date(when: float | None = None) -> str:
    """A Date field's value (RFC 5322 §3.3) for ``when`` (default: now), in
    local time with its offset: ``Wed, 02 Dec 2026 04:05:06 +0100``."""
    t = time.localtime(when)
    offset = t.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{hours:02d}{minutes:02d}"
    )


def message_id(domain: str) -> str:
    """A new msg-id (RFC 5322 §3.6.4) under ``domain``, with its angle brackets:
    the time (UTC), the process and 64 random bits make it unique."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    serial = int.from_bytes(os.urandom(8), "big")
    return f"<{stamp}.{os.getpid()}.{serial}@{domain}>"
