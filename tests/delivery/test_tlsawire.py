"""TLSA answers read record by record (delivery/tlsawire.py, RFC 6698 §2.1, RFC 7671 §4.1).

dnspython refuses a whole answer for one record whose digest does not fit its
matching type; smtpmail keeps such a record, unusable, beside the others.
"""

from __future__ import annotations

import contextlib

import dns.exception
import dns.flags
import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpmail.delivery.tlsawire import parse_tlsa_answer
from smtpmail.transport.dane import TLSARecord

NAME = "_25._tcp.mx.example.net."
SHA256 = bytes(range(32))


def _answer(rdatas: list[bytes], *, ad: bool = True) -> bytes:
    query = dns.message.make_query(NAME, "TLSA")
    response = dns.message.make_response(query)
    if ad:
        response.flags |= dns.flags.AD
    rrset = response.find_rrset(
        response.answer, dns.name.from_text(NAME), dns.rdataclass.IN, dns.rdatatype.TLSA,
        create=True,
    )  # fmt: skip
    for data in rdatas:  # generic rdata: written as given, however dnspython would judge it
        rrset.add(dns.rdata.GenericRdata(dns.rdataclass.IN, dns.rdatatype.TLSA, data), 300)
    return response.to_wire()


# (records on the wire, the records read, how many usable)
CASES = [
    ([b"\x03\x01\x01" + SHA256], [TLSARecord(3, 1, 1, SHA256)], 1),
    ([b"\x03\x01\x01\xab\xcd"], [TLSARecord(3, 1, 1, b"\xab\xcd")], 0),
    ([b"\x03\x01\x01\xab\xcd", b"\x02\x01\x01" + SHA256],
     [TLSARecord(3, 1, 1, b"\xab\xcd"), TLSARecord(2, 1, 1, SHA256)], 1),
    ([b"\x03\x01\x02" + SHA256], [TLSARecord(3, 1, 2, SHA256)], 0),  # SHA2-512 needs 64 octets
    ([b"\x03\x01"], [], 0),  # not even the three octets: nothing to read
    ([], [], 0),
]  # fmt: skip


@pytest.mark.parametrize(("rdatas", "records", "usable"), CASES)
def test_every_record_is_read_as_it_is(
    rdatas: list[bytes], records: list[TLSARecord], usable: int
) -> None:
    rcode, ad, found = parse_tlsa_answer(_answer(rdatas))
    assert (rcode, ad) == (0, True)
    assert sorted(found, key=str) == sorted(records, key=str)  # an RRset has no order
    assert sum(r.usable for r in found) == usable


def test_dnspython_refuses_what_is_read_here() -> None:
    """Why this module exists: the strict parser rejects the whole answer."""
    wire = _answer([b"\x03\x01\x01\xab\xcd", b"\x03\x01\x01" + SHA256])
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)
    assert len(parse_tlsa_answer(wire)[2]) == 2


def test_the_ad_bit_is_reported() -> None:
    assert parse_tlsa_answer(_answer([b"\x03\x01\x01" + SHA256], ad=False))[1] is False


@given(st.binary(max_size=200))
def test_any_bytes_give_records_or_value_error(wire: bytes) -> None:
    # Anything else (IndexError, struct.error) escaping would fail the test.
    with contextlib.suppress(ValueError):
        parse_tlsa_answer(wire)


@given(st.lists(st.binary(min_size=3, max_size=80), max_size=5))
def test_truncating_an_answer_never_reads_past_its_end(rdatas: list[bytes]) -> None:
    wire = _answer(rdatas)
    assert len(parse_tlsa_answer(wire)[2]) == len(set(rdatas))  # an RRset holds no duplicates
    for cut in range(12, len(wire), 7):
        with contextlib.suppress(ValueError):
            parse_tlsa_answer(wire[:cut])
