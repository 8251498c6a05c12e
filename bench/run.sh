#!/usr/bin/env bash
# The benchmark command: installs the peers and tools it needs, then runs
# bench/run.py (arguments are passed on: --quick, --runs N, --only 1 ...);
# --outbox first runs the outbox scenario instead (bench/outbox_bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Servers and peers from Debian: Postfix (smtp-sink, smtp-source, and a private
# instance that discards: the CHUNKING server; it needs root), swaks, msmtp;
# GNU time measures each client's own peak RSS. aiosmtpd (the lock-step server)
# comes from PyPI below.
APT_PACKAGES="postfix swaks msmtp time"
# shellcheck disable=SC2086
missing=$(missing_packages $APT_PACKAGES)
if [ -n "$missing" ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
  # shellcheck disable=SC2086
  apt_install $missing
fi
export PATH="$PATH:/usr/sbin"

# Python peers and the chart library in a venv of its own (bench/.venv), isolated
# from the system's site-packages so that no .pth file there slows every start;
# smtpmail itself is imported from this checkout's src/ (PYTHONPATH).
VENV=bench/.venv
make_venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  matplotlib aiosmtplib aiosmtpd
if [ "${1:-}" = "--outbox" ]; then
  # The outbox scenario (bench/outbox_bench.py): a private PostgreSQL, psycopg,
  # and tests/support/pgserver.py (which imports pytest) to start it.
  shift
  [ -z "$(missing_packages postgresql)" ] || apt_install postgresql
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'psycopg[binary]' pytest
  exec "$VENV/bin/python" bench/outbox_bench.py "$@"
fi
exec "$VENV/bin/python" bench/run.py "$@"
