"""``python -m smtpmail``: the command line."""

from smtpmail.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
