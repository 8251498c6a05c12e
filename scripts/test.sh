#!/usr/bin/env bash
# Install everything the tests need, then run the linters and the whole suite.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start as real servers (Postfix, smtp-sink, dnsmasq, Exim...).
APT_PACKAGES="postfix dnsmasq-base git-email libmailtools-perl dovecot-core dovecot-lmtpd chromium opendkim"
need_apt=""
for bin in /usr/sbin/postfix /usr/sbin/smtp-sink /usr/sbin/dnsmasq /usr/lib/git-core/git-send-email /usr/share/perl5/Mail/Address.pm /usr/sbin/dovecot /usr/lib/dovecot/lmtp /usr/bin/chromium /usr/sbin/opendkim; do
  [ -e "$bin" ] || need_apt=1
done
if [ -n "$need_apt" ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $APT_PACKAGES
fi

# Python dependencies in a project-local virtual environment.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check src tests solution.py $(ls -d bench 2>/dev/null)
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"; exit 1
fi
exit "$status"
