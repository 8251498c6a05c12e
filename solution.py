"""A minimal SMTP client on a raw TCP socket (RFC 5321), the assignment's solution.

It sends one message to the server at ``mailserver:port`` with the dialogue
HELO, MAIL FROM, RCPT TO, DATA, the message, ".", QUIT, reading each reply
whole (replies may span several reads and several lines). It prints nothing:
a wrong reply, a silent server or one that is down raises ``SMTPClientError``
naming the command and the server's answer, and the socket is always closed.

Standard library only and self-contained: this file is the teaching version
of the protocol that the ``smtpmail`` package implements in full.
"""

from socket import AF_INET, SOCK_STREAM, socket

TIMEOUT = 10.0  # seconds to wait for each reply, so a silent server cannot hang us
MAX_REPLY = 64 * 1024  # a server that never stops talking is cut off here
SENDER = "alice@example.org"
RECIPIENT = "bob@example.org"


class SMTPClientError(Exception):
    """The server was unreachable or gave an unexpected reply."""


def read_reply(sock: socket) -> tuple[int, str]:
    """Read one whole reply; return (code, text).

    A reply is one or more lines "ddd-text" ending with a line "ddd text"
    (RFC 5321 §4.2.1); TCP may deliver it in any number of pieces. Lines end
    in CRLF, but a bare LF is accepted too (be liberal in what you accept).
    """
    data = b""
    while True:
        lines = data.replace(b"\r\n", b"\n").split(b"\n")
        for line in lines[:-1]:  # the last piece is not yet a whole line
            if len(line) < 3 or not line[:3].isdigit():
                raise ValueError(f"malformed reply line {line[:80]!r}")
            if len(line) == 3 or line[3:4] == b" ":  # the final line of the reply
                return int(line[:3]), data.decode("utf-8", "replace").strip()
        if len(data) > MAX_REPLY:
            raise ValueError("reply too long")
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk


def command(sock: socket, line: str, expected: int, name: str = "") -> str:
    """Send ``line`` (nothing for the greeting), read the reply, check its code."""
    name = name or line.strip()
    try:
        if line:
            sock.sendall(line.encode("utf-8"))
        code, text = read_reply(sock)
    except (OSError, ValueError) as exc:  # a timeout, a broken connection, garbage
        raise SMTPClientError(f"{name}: no valid reply: {exc}") from exc
    if code != expected:
        raise SMTPClientError(f"{name}: expected {expected}, got {text!r}")
    return text


def smtp_client(port: int = 1025, mailserver: str = "127.0.0.1") -> None:
    """Send one message through ``mailserver:port``; raise SMTPClientError if that fails."""
    msg = (
        f"From: Alice <{SENDER}>\r\n"
        f"To: Bob <{RECIPIENT}>\r\n"
        "Subject: Hello from a raw-socket SMTP client\r\n"
        "\r\n"
        " My message"
    )
    endmsg = "\r\n.\r\n"

    # Create a socket called clientSocket and connect to the mail server.
    clientSocket = socket(AF_INET, SOCK_STREAM)
    clientSocket.settimeout(TIMEOUT)
    try:
        try:
            clientSocket.connect((mailserver, port))
        except OSError as exc:
            raise SMTPClientError(f"cannot connect to {mailserver} port {port}: {exc}") from exc
        command(clientSocket, "", 220, "greeting")
        command(clientSocket, "HELO Alice\r\n", 250)
        command(clientSocket, f"MAIL FROM:<{SENDER}>\r\n", 250)
        command(clientSocket, f"RCPT TO:<{RECIPIENT}>\r\n", 250)
        command(clientSocket, "DATA\r\n", 354)
        # A line starting with "." gets a second one (RFC 5321 §4.5.2), so that
        # only the end marker, a line holding a single period, ends the message.
        body = msg.replace("\r\n.", "\r\n..")
        command(clientSocket, body + endmsg, 250, "end of data")
        command(clientSocket, "QUIT\r\n", 221)
    finally:
        clientSocket.close()


if __name__ == "__main__":
    smtp_client(1025, "127.0.0.1")
