"""Release: send a captured message on to a real server with smtpmail's Client.

The server and how to reach it are fixed when the sink starts, with the
options of ``smtpmail send`` (``--release-server URL``, ``--account``,
``--tls``, ``--user``, ``--password-env``...): the web page chooses only the
recipients, so a page can never make the sink connect somewhere else. The
message goes as it was captured, less its Bcc fields (the Client's rule).
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from smtpmail.cli.environment import Environment
from smtpmail.cli.server import ServerSettings, client_kwargs, make_client, resolve_settings

__all__ = ["Releaser"]


class Releaser:
    """Sends one message to the configured server; blocking (run it in a thread)."""

    def __init__(self, settings: ServerSettings, env: Environment) -> None:
        self.settings = settings
        self.env = env

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Environment) -> Releaser | None:
        """The release settings from sink's options, None when release was not asked
        for. Raises UsageError or ConfigError as ``send`` would."""
        if not args.release_server and not args.account:
            return None
        options = copy.copy(args)
        # sink's --host/--port are where it listens, not where it releases to.
        options.server, options.host, options.port = args.release_server, None, None
        settings = resolve_settings(options, env)
        # Checked (and a missing password asked for at the terminal) now, at
        # start-up, not on the terminal in the middle of a web request.
        client_kwargs(settings, env)
        return cls(settings, env)

    @property
    def where(self) -> str:
        return self.settings.url

    def release(self, content: bytes, sender: str, recipients: list[str]) -> dict[str, Any]:
        """Send; the accepted and refused recipients (raises smtpmail errors:
        InvalidAddress for the addresses given, before connecting)."""
        from smtpmail import Envelope

        envelope = Envelope(sender, recipients)
        with make_client(self.settings, self.env) as client:
            result = client.send(content, envelope=envelope)
        return {
            "server": self.where,
            "accepted": list(result.accepted),
            "refused": {
                address: f"{reply.code} {reply.text_oneline()}"
                for address, reply in result.refused.items()
            },
        }
