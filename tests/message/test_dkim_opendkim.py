"""OpenDKIM, an independent implementation, verifies what aiosmtpd received.

``opendkim -t FILE`` runs OpenDKIM's milter logic on a message file (Debian's
``opendkim`` package; scripts/test.sh installs it). The public key comes from
a ``TestPublicKeys`` file here, and from the MX world's DNS server in
tests/delivery/test_delivery_bcc.py. A missing opendkim fails the test:
it is the independent check, never skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpmail.message.dkim import DKIMKey
from smtpmail.transport.sync import Client
from support.dkimcheck import ALGORITHMS, MESSAGES, RECIPIENTS, make_key, opendkim_verifies
from support.servers import RecordingServer


def keys_config(key: DKIMKey, workdir: Path) -> list[str]:
    keys = workdir / "keys"
    keys.write_text(f"{key.selector}._domainkey.{key.domain} {key.dns_record()}\n")
    return [f"TestPublicKeys {keys}"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_opendkim_verifies_what_the_server_received(
    smtpd: RecordingServer, tmp_path: Path, algorithm: str
) -> None:
    key = make_key(tmp_path, algorithm)
    with Client("127.0.0.1", smtpd.port, dkim=key) as client:
        for message in MESSAGES.values():
            client.send(message, "ann@example.org", RECIPIENTS)
    config = keys_config(key, tmp_path)
    for name, got in zip(MESSAGES, smtpd.messages, strict=True):
        assert opendkim_verifies(got.content, tmp_path, config), name
        assert b"blind" not in got.content
    # The check can fail: a changed body does not verify.
    tampered = smtpd.messages[0].content.replace(b"Hello Bob", b"Hello Rob")
    assert not opendkim_verifies(tampered, tmp_path, config)
