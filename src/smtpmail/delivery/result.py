"""What became of each recipient of a direct delivery (RFC 5321 §4.2.5, §6; RFC 3463).

A recipient ends in one of three states: delivered (an MX host took the
message), deferred (a transient failure: try again later) or failed
(permanent: bounce it). The outcome names the MX host that decided it and the
reply that did; failures decided locally (DNS, MTA-STS, no host reachable)
carry no reply but an RFC 3463 enhanced status code all the same.

A deferral may be *possibly delivered*: the connection was lost while waiting
for the reply to the end of the data (RFC 5321 §4.1.1.4, §6.1), so the host
may have taken the message; a retry may then deliver a second copy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from smtpmail.protocol.reply import Reply

__all__ = ["DeliveryReport", "DeliveryStatus", "RecipientDelivery"]


class DeliveryStatus(enum.Enum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RecipientDelivery:
    """The outcome for one forward-path.

    ``mx`` and ``address`` name the host that decided it: the one that
    answered, or for a deferral after failover the last host (and address)
    tried; None when no host was tried at all (a DNS failure, an MTA-STS
    policy that lists none). ``reply`` is the server's reply that decided it
    (None when decided locally); ``attempts`` lists every host tried and why
    it was left. ``mta_sts`` is the MTA-STS policy mode that applied (None
    without a policy); ``tls`` the TLS version and cipher of the delivering
    connection; ``dane`` what DANE verified or why it did not apply.
    ``possibly_delivered``: deferred, but the host may have taken the message
    (no reply after the end of the data). ``rcpt_reply``: the deciding host's
    reply to RCPT TO, also when a later reply decided.
    """

    recipient: str
    domain: str
    status: DeliveryStatus
    text: str
    mx: str | None = None
    address: str | None = None
    reply: Reply | None = None
    local_status: str | None = None
    attempts: tuple[str, ...] = ()
    mta_sts: str | None = None
    #: The TLS version and cipher the message travelled under; None in clear text.
    tls: str | None = None
    #: DANE (RFC 7672): ``"dane-ee verified"``/``"dane-ta verified"``, or why it did
    #: not apply (``"no DANE: no TLSA records"``...); None when DANE was off.
    dane: str | None = None
    possibly_delivered: bool = False
    #: The host's reply to RCPT TO for this recipient, when it got that far.
    rcpt_reply: Reply | None = None

    @property
    def delivered(self) -> bool:
        return self.status is DeliveryStatus.DELIVERED

    @property
    def is_transient(self) -> bool:
        return self.status is DeliveryStatus.DEFERRED

    @property
    def is_permanent(self) -> bool:
        return self.status is DeliveryStatus.FAILED

    @property
    def code(self) -> int | None:
        return None if self.reply is None else self.reply.code

    @property
    def enhanced_status(self) -> str | None:
        """The RFC 3463 code: the reply's when it has one, else the local one."""
        found = None if self.reply is None else self.reply.enhanced_status
        return found or self.local_status

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "domain": self.domain,
            "status": self.status.value,
            "mx": self.mx,
            "address": self.address,
            "code": self.code,
            "enhanced_status": self.enhanced_status,
            "text": self.text,
            "mta_sts": self.mta_sts,
            "tls": self.tls,
            "dane": self.dane,
            "possibly_delivered": self.possibly_delivered,
            "attempts": list(self.attempts),
        }


@dataclass(slots=True)
class DeliveryReport:
    """Every recipient's outcome, in the order the envelope listed them."""

    sender: str
    recipients: dict[str, RecipientDelivery] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every recipient was delivered."""
        return all(r.delivered for r in self.recipients.values())

    def _with(self, status: DeliveryStatus) -> list[str]:
        return [a for a, r in self.recipients.items() if r.status is status]

    @property
    def delivered(self) -> list[str]:
        return self._with(DeliveryStatus.DELIVERED)

    @property
    def deferred(self) -> list[str]:
        return self._with(DeliveryStatus.DEFERRED)

    @property
    def failed(self) -> list[str]:
        return self._with(DeliveryStatus.FAILED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "recipients": [r.as_dict() for r in self.recipients.values()],
        }

    def __repr__(self) -> str:
        return (
            f"<DeliveryReport delivered={self.delivered} deferred={self.deferred} "
            f"failed={self.failed}>"
        )
