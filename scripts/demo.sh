#!/usr/bin/env bash
# The README's first quick-start command: install smtpmail with its embedded
# server (the 'server' extra) into a project-local venv and run `smtpmail demo`.
# Extra arguments go to the demo (try --async, or --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
make_venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[server]'
exec .venv/bin/smtpmail demo "$@"
