"""Date and Message-ID as a mailer adds them (smtpmail.message.stamp), made
without the email package: the same text as email.utils writes, in any time
zone and whatever the locale."""

from __future__ import annotations

import email.utils
import locale
import os
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpmail.message import stamp

ZONES = ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Pacific/Chatham"]


@pytest.fixture(params=ZONES)
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(when=st.integers(0, 4_102_444_800))  # 1970 to 2100: summer and winter times
def test_date_is_what_formatdate_writes(zone: str, when: int) -> None:
    assert stamp.date(when) == email.utils.formatdate(when, localtime=True)


def test_date_names_are_english_in_any_locale() -> None:
    saved = locale.setlocale(locale.LC_TIME)
    for name in ("de_DE.UTF-8", "fr_FR.UTF-8", "C"):  # (whichever this machine has)
        try:
            locale.setlocale(locale.LC_TIME, name)
        except locale.Error:
            continue
        try:
            assert stamp.date(0) == email.utils.formatdate(0, localtime=True)
            assert re.fullmatch(r"Thu, 01 Jan 1970 \d\d:\d\d:\d\d [+-]\d{4}", stamp.date(0))
        finally:
            locale.setlocale(locale.LC_TIME, saved)


def test_message_id_is_a_unique_msg_id_under_the_domain() -> None:
    ids = {stamp.message_id("example.org") for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        # RFC 5322 §3.6.4: "<" dot-atom-text "@" domain ">"
        assert re.fullmatch(r"<\d{14}\.\d+\.\d+@example\.org>", value)
        assert email.utils.parseaddr(value[1:-1])[1] == value[1:-1]
