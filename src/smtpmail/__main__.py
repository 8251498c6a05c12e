"""``python -m smtpmail``: the command line."""

from smtpmail.cli import console

if __name__ == "__main__":
    console()
