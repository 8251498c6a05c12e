"""Direct delivery to each recipient domain's MX hosts, as an MTA does (RFC 5321 §5).

::

    import smtpmail

    report = smtpmail.deliver(message, "me@example.org", ["you@example.net", "them@example.com"])
    for outcome in report.recipients.values():
        print(outcome.recipient, outcome.status.value, outcome.mx, outcome.enhanced_status)

- :mod:`.routing`: recipients grouped by domain (IDNA), one envelope each;
- :mod:`.resolver`: MX / implicit MX / null MX / A / AAAA / TXT over dnspython
  (the ``dns`` extra, imported lazily); ``Resolver(nameservers=[(addr, port)])``;
- :mod:`.flow`: the failover rules, once, as a sans-IO flow;
- :mod:`.mtasts`: MTA-STS (RFC 8461) policies, fetched over HTTPS and cached;
- :mod:`.tlspolicy`: opportunistic / mandatory TLS per MX host, DANE (RFC 7672) first;
- :mod:`.deliver`: :func:`deliver` (threads) and :func:`deliver_async` (asyncio).
"""

from __future__ import annotations

from smtpmail.delivery.deliver import deliver, deliver_async
from smtpmail.delivery.mtasts import MTASTS, PolicyCache, STSPolicy
from smtpmail.delivery.resolver import MXHost, Resolver, TLSAAnswer
from smtpmail.delivery.result import DeliveryReport, DeliveryStatus, RecipientDelivery
from smtpmail.delivery.tlspolicy import TLSDecision

__all__ = [
    "MTASTS",
    "DeliveryReport",
    "DeliveryStatus",
    "MXHost",
    "PolicyCache",
    "RecipientDelivery",
    "Resolver",
    "STSPolicy",
    "TLSAAnswer",
    "TLSDecision",
    "deliver",
    "deliver_async",
]
