#!/usr/bin/env bash
# The benchmark command: installs the peers and tools it needs, then runs
# bench/run.py (arguments are passed on: --quick, --runs N, --only 1 ...).
set -euo pipefail
cd "$(dirname "$0")/.."

# Server and peers from Debian: Postfix (smtp-sink, smtp-source), swaks, msmtp;
# GNU time measures each client's own peak RSS.
APT_PACKAGES="postfix swaks msmtp time"
need=""
for bin in smtp-sink smtp-source swaks msmtp time; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || need=1
done
if [ -n "$need" ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $APT_PACKAGES
fi
export PATH="$PATH:/usr/sbin"

# Python peers and the chart library in a venv of its own (bench/.venv), isolated
# from the system's site-packages so that no .pth file there slows every start;
# smtpmail itself is imported from this checkout's src/ (PYTHONPATH).
PY=${PYTHON:-python3}
VENV=bench/.venv
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  matplotlib aiosmtplib aiosmtpd
exec "$VENV/bin/python" bench/run.py "$@"
