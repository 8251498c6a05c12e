"""Hiding the credentials from everything a person may see (RFC 4954 §4, §9).

A server may quote what it was sent, or name the user, in any reply: the 535
refusing the credentials, a 454 or 421 during AUTH, or any reply later in the
session. :class:`Secrets` holds every form of the credentials a session has
used (the SASL mechanisms add the forms they send) and rewrites a reply as it
may be shown, each form replaced by ``****``.
"""

from __future__ import annotations

import base64
import re

from smtpmail.protocol.reply import Reply

__all__ = ["REDACTED", "Secrets"]

REDACTED = "****"


class Secrets:
    """Every form of the credentials a session has used, and how to hide them.

    Two kinds of forms. A secret (the password or token, each response sent,
    their base64 forms) is hidden wherever it appears when it is at least
    :data:`MIN_ANYWHERE` characters long. A name (the user name and the
    authorization identity, whatever their length) and a short secret are
    hidden only where they stand as a whole word: not inside a longer word,
    address or host name. A user name is an ordinary word ("mail", "info",
    "jo") that also occurs inside host names and other words; hidden
    everywhere it would mangle every reply ("****.example.org"), and a
    two-character secret would turn half the text into stars. Matching is
    case-sensitive, as the credentials are.
    """

    __slots__ = ("_anywhere", "_pattern", "_words", "challenges_shown")

    #: Secret forms at least this long are hidden anywhere, shorter ones as whole words.
    MIN_ANYWHERE = 6

    def __init__(self) -> None:
        self._anywhere: set[str] = set()
        self._words: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        #: The AUTH challenge about to be read may be shown, these forms hidden
        #: from it, rather than hidden whole (a mechanism's fixed prompts, LOGIN's:
        #: ``Mechanism.public_challenges``). Set by the session for each one.
        self.challenges_shown = False

    def add(self, value: str) -> None:
        """A secret: hidden anywhere (whole words only when short)."""
        if value:
            (self._anywhere if len(value) >= self.MIN_ANYWHERE else self._words).add(value)
            self._pattern = None

    def add_name(self, value: str) -> None:
        """A user name or identity: hidden as a whole word, and its base64 forms as secrets."""
        if value:
            self._words.add(value)
            encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
            self.add(encoded)
            self.add(encoded.rstrip("="))
            self._pattern = None

    def update(self, other: Secrets) -> None:
        self._anywhere |= other._anywhere
        self._words |= other._words
        self._pattern = None

    def __contains__(self, value: str) -> bool:
        return value in self._anywhere or value in self._words

    def __repr__(self) -> str:
        return f"<Secrets: {len(self._anywhere) + len(self._words)} forms>"

    def hide(self, text: str) -> str:
        """``text`` with every form of the credentials replaced by ``****``."""
        pattern = self._pattern
        if pattern is None:
            pattern = self._pattern = self._compile()
        return pattern.sub(REDACTED, text) if pattern.pattern else text

    def redact(self, reply: Reply, *, during_auth: bool = False) -> Reply:
        """``reply`` as it may be shown. ``during_auth``: a reply to AUTH, where
        any long base64 run is hidden too (servers quote what they were sent,
        perhaps cut short)."""
        lines = tuple(self.hide(line) for line in reply.lines)
        if during_auth:
            lines = tuple(_BASE64_RUN.sub(REDACTED, line) for line in lines)
        return reply if lines == reply.lines else Reply(reply.code, lines)

    def _compile(self) -> re.Pattern[str]:
        def alternation(forms: set[str]) -> str:
            # Longest first: a form that contains another is hidden whole.
            return "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))

        parts = []
        if self._anywhere:
            parts.append(alternation(self._anywhere))
        if self._words:
            parts.append(f"{_WORD_BEFORE}(?:{alternation(self._words)}){_WORD_AFTER}")
        return re.compile("|".join(parts))


#: A whole word: neither preceded nor followed by a letter, a digit or a
#: character that continues an address or host name ("." only when a
#: letter or digit follows it: a sentence may end right after the word).
_WORD_BEFORE = r"(?<![\w.@%+\-])"
_WORD_AFTER = r"(?![\w@%+\-])(?!\.\w)"


#: A run of base64 this long in a reply to AUTH is taken for an echoed (maybe
#: truncated) response and hidden: servers quote what they were sent.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
