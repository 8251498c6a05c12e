"""Exit statuses (sysexits.h, as sendmail and msmtp use them) and the one place
that maps an exception to a status and a message."""

from __future__ import annotations

__all__ = ["EXIT_CODES_HELP", "PROBE_EXIT_CODES_HELP", "ConfigError", "UsageError", "exit_status"]

EX_OK = 0
EX_USAGE = 64  # the command was used wrongly
EX_DATAERR = 65  # the input data was bad (an address, a header, the message)
EX_NOINPUT = 66  # an input file could not be read
EX_NOUSER = 67  # a recipient was refused permanently
EX_NOHOST = 68  # the host name is unknown
EX_UNAVAILABLE = 69  # the service refused (5xx), or a needed extension is missing
EX_SOFTWARE = 70  # an internal error
EX_CANTCREAT = 73  # an output file or folder could not be created
EX_PROTOCOL = 76  # the server broke the protocol
EX_TEMPFAIL = 75  # a temporary failure: try again later
EX_NOPERM = 77  # authentication refused
EX_CONFIG = 78  # the configuration is wrong
#: Some recipients were accepted and some refused (not in sysexits.h).
EX_PARTIAL = 79

#: The table ``--help`` shows, so scripts know what each status means.
EXIT_CODES_HELP = """exit status (sysexits.h, as sendmail and msmtp use them):
  0   sent: every recipient accepted
  64  usage error (bad option or argument)
  65  data error (an address, header or message that cannot be sent)
  66  an input file (message, attachment, body, certificate) cannot be read
  67  every recipient refused, all permanently (unknown user); when any
      refusal was temporary (4xx), 75: the message names each reply
  68  the server's host name is unknown
  69  service unavailable (5xx refusal, TLS failure, missing extension)
  70  internal error
  73  the outbox cannot be written (read-only folder, no permission)
  75  temporary failure (4xx, connection refused or lost, timeout, the outbox's
      disk full): try later
  76  the server broke the SMTP protocol
  77  authentication refused or impossible (permission)
  78  configuration error (config file, account, password command)
  79  partial success: some recipients accepted, some refused"""

#: ``probe``'s table: it sends no message, so no recipient or partial statuses.
PROBE_EXIT_CODES_HELP = """exit status (sysexits.h):
  0   the server answered: the report lists what it offers and what is wrong
  64  usage error (bad option or argument)
  66  a certificate or key file cannot be read
  68  the server's host name is unknown
  69  service unavailable (5xx refusal, TLS failure, missing extension)
  75  temporary failure (4xx, connection refused or lost, timeout): try later
  76  the server broke the SMTP protocol (not an SMTP server on that port)
  77  authentication refused or impossible (permission)
  78  configuration error (config file, account, password command)"""


class UsageError(Exception):
    """The command line asks for something impossible (exit 64)."""


class ReportedUsageError(UsageError):
    """A usage error argparse's way has already shown on stderr."""


class ConfigError(Exception):
    """The configuration file, an account or a password source is wrong (exit 78)."""


def exit_status(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message for ``exc``."""
    import socket

    from smtpmail import errors

    if isinstance(exc, UsageError):
        return EX_USAGE, str(exc)
    if isinstance(exc, ConfigError):
        return EX_CONFIG, str(exc)
    if isinstance(exc, errors.InputError):
        if isinstance(exc, errors.ExtensionNotSupported):
            return EX_UNAVAILABLE, str(exc)
        if isinstance(exc.__cause__, FileNotFoundError | IsADirectoryError | PermissionError):
            return EX_NOINPUT, str(exc)  # a file it names (a CA, a key) cannot be read
        return EX_DATAERR, str(exc)
    if isinstance(exc, errors.MessageReadError):
        return EX_NOINPUT, str(exc)
    if isinstance(exc, errors.PlaintextAuthRefused):
        return EX_NOPERM, (
            f"refusing to send credentials to {exc.where} over an unencrypted connection; "
            "use --tls starttls (or smtps://, submission://), or --allow-plaintext-auth "
            "if the network is trusted"
        )
    if isinstance(exc, errors.AuthenticationError):
        return (EX_TEMPFAIL if exc.is_transient else EX_NOPERM), str(exc)
    if isinstance(exc, errors.RecipientsRefused):
        return (EX_TEMPFAIL if exc.is_transient else EX_NOUSER), str(exc)
    if isinstance(exc, errors.ConnectError) and isinstance(exc.__cause__, socket.gaierror):
        return EX_NOHOST, str(exc)
    if isinstance(exc, errors.RemoteProtocolError):
        return EX_PROTOCOL, str(exc)
    if isinstance(exc, errors.CertificateError):
        # The library's message names its own API; the command line names its options.
        return EX_UNAVAILABLE, (
            f"TLS certificate check for {exc.where} failed: {exc.reason}; to trust a "
            "private CA give --cafile PATH, or pin the certificate with --fingerprint SHA256 "
            "(see 'smtpmail probe --insecure-no-verify' for its fingerprint)"
        )
    if isinstance(exc, errors.TLSError):
        # A handshake the network cut short (timed out, connection lost) is
        # "try later" as a connection lost anywhere else; the server's no to
        # TLS (a 454 included: a server without TLS says it) is 69.
        return (EX_TEMPFAIL if exc.transient else EX_UNAVAILABLE), str(exc)
    if isinstance(exc, errors.OutboxError):
        return (EX_TEMPFAIL if exc.is_transient else EX_CANTCREAT), str(exc)
    if isinstance(exc, errors.SMTPError):
        return (EX_TEMPFAIL if exc.is_transient else EX_UNAVAILABLE), str(exc)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
        return EX_NOINPUT, str(exc)
    if isinstance(exc, OSError):
        return EX_TEMPFAIL, str(exc)
    return EX_SOFTWARE, f"internal error: {type(exc).__name__}: {exc}"
