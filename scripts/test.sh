#!/usr/bin/env bash
# Install everything the tests need, then run the linters and the whole suite.
# This is the README's test command and what .ci/run calls. Arguments go to
# pytest. The tests only start what this prepares: a missing server fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Debian packages the tests run as installed (Postfix and its smtp-sink, jq for the examples
# of docs/json.md, dnsmasq,
# git send-email, Dovecot LMTP and SASL, chromium for the web inbox, opendkim, PostgreSQL
# for the outbox's database store: tests/support/pgserver.py), and libatomic1 for the node
# program in Playwright's wheel (checked below, after pip).
APT_PACKAGES="postfix jq dnsmasq-base git-email libmailtools-perl dovecot-core dovecot-lmtpd chromium opendkim libatomic1 knot knot-dnsutils unbound ldnsutils iproute2 postgresql"
# The proxies tests/support/proxies.py starts: Dante (SOCKS 4/5), microsocks (SOCKS 5 with a
# password), tinyproxy (HTTP CONNECT), OpenSSH's ssh -D and sshd (SOCKS 4A).
APT_PACKAGES="$APT_PACKAGES dante-server microsocks tinyproxy openssh-server openssh-client"
# The C compiler and Python headers the optional mypyc build needs (the compiled job below).
APT_PACKAGES="$APT_PACKAGES gcc python3-dev"
# Debian packages the tests run unpacked with dpkg-deb -x under $SMTPMAIL_DEBS/<package>
# (tests/support/interop/exim.py reads the same place): each conflicts with Postfix as an
# installed package. What they depend on is installed; they themselves are not.
UNPACKED_PACKAGES="exim4-daemon-light opensmtpd"
# Under /tmp, not the checkout: Exim re-executes itself as Debian-exim, which
# must reach the binary (a home directory is often closed to other users).
export SMTPMAIL_DEBS=${SMTPMAIL_DEBS:-/tmp/smtpmail-debs}

# unpacked_ready PKG: PKG is unpacked, what it depends on (recorded when it was
# unpacked) is installed, and every library its programs load is found.
unpacked_ready() {
  local root=$SMTPMAIL_DEBS/$1
  [ -f "$root/.smtpmail-depends" ] || return 1
  # shellcheck disable=SC2046
  [ -z "$(missing_packages $(cat "$root/.smtpmail-depends"))" ] || return 1
  [ -z "$(unresolved_libraries "$root")" ]
}

# One preparation at a time on this machine (two checkouts may test at once).
if [ ! -d "$SMTPMAIL_DEBS" ]; then
  mkdir -p "$SMTPMAIL_DEBS"
  chmod 755 "$SMTPMAIL_DEBS"
fi
[ -e "$SMTPMAIL_DEBS/.lock" ] || : >"$SMTPMAIL_DEBS/.lock"
exec 9<"$SMTPMAIL_DEBS/.lock"
flock 9

# The cheap check first: a warm machine runs neither apt nor npm.
wanted=$APT_PACKAGES
unpack=""
for pkg in $UNPACKED_PACKAGES; do
  unpacked_ready "$pkg" || unpack="$unpack $pkg"
done
command -v node >/dev/null && command -v npm >/dev/null || wanted="$wanted nodejs npm"
# shellcheck disable=SC2086
missing=$(missing_packages $wanted)

if [ -n "$missing$unpack" ]; then
  echo "== installing Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix's installer asks which mail setup to write: none, the tests bring their own.
  installed debconf || apt_install debconf
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
  apt_update
  declare -A depends=()
  for pkg in $unpack; do
    depends[$pkg]=$(runtime_depends "$pkg")
  done
  # shellcheck disable=SC2086,SC2048 # lists of names, one a word
  apt_install $missing ${depends[*]}
  for pkg in $unpack; do
    unpack_deb "$pkg" "$SMTPMAIL_DEBS/$pkg"
    unresolved=$(unresolved_libraries "$SMTPMAIL_DEBS/$pkg")
    if [ -n "$unresolved" ]; then
      echo "$pkg: libraries still missing after installing its Depends:" >&2
      echo "$unresolved" >&2
      exit 1
    fi
    # Written last: the tests take it as "unpacked and ready".
    echo "${depends[$pkg]}" >"$SMTPMAIL_DEBS/$pkg/.smtpmail-depends"
  done
fi
exec 9>&-

# Node.js packages the tests run (smtp-server, Haraka), each folder from its committed
# package-lock.json: npm ci again whenever that lock file changed (tests/support/nodeserver.py checks).
NODE_FOLDERS="tests/node tests/haraka"
for folder in $NODE_FOLDERS; do
  if ! cmp -s "$folder/package-lock.json" "$folder/node_modules/.smtpmail-package-lock.json"; then
    echo "== npm ci in $folder"
    (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$folder/package-lock.json" "$folder/node_modules/.smtpmail-package-lock.json"
  fi
done

# Python dependencies in a project-local virtual environment.
make_venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,docs]'
# Programs that wheels bring and the tests run (Playwright's node) load system libraries
# no pip dependency names; a missing one would fail those tests obscurely, so say it here.
unresolved=$(unresolved_libraries .venv/lib -perm -u+x -not -name '*.so*')
if [ -n "$unresolved" ]; then
  echo "libraries missing for programs in .venv (add their Debian packages to APT_PACKAGES):" >&2
  echo "$unresolved" >&2
  exit 1
fi

echo "== ruff"
.venv/bin/ruff check src tests solution.py scripts setup.py _build_backend $(ls -d bench 2>/dev/null)
.venv/bin/ruff format --check src tests solution.py scripts setup.py _build_backend $(ls -d bench 2>/dev/null)
echo "== mypy --strict"
.venv/bin/mypy
echo "== mkdocs build --strict"
# The documentation site, built offline into a temporary folder: a broken link, a
# missing page or a docstring mkdocstrings cannot read fails the run.
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
echo "== pytest"
set +e
.venv/bin/python -m pytest -q -rfEs "$@"  # -rs: each skip with its reason
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"; exit 1
fi
if [ "$status" -ne 0 ] || [ "$#" -ne 0 ]; then
  exit "$status"  # the compiled job belongs to a whole run (as .ci/run makes)
fi

# The optional compiled build (setup.py, docs/install.md): built the way a user builds it
# (SMTPMAIL_MYPYC=1, pip's isolated build environment), installed into a folder of its own,
# and the suites of what it compiles run against it: the protocol tables, the message
# layer, the transport tests (both clients against aiosmtpd, Postfix and the rest), the
# hostile servers, the layering, the value classes (immutable, hashable, picklable),
# and tests/test_compiled_build.py, which fails unless the listed modules are imported
# from the extensions.
echo "== the mypyc build"
compiled=$(mktemp -d)
trap 'rm -rf "$compiled"' EXIT
SMTPMAIL_MYPYC=1 .venv/bin/python -m pip wheel -q --no-deps -w "$compiled/wheel" .
.venv/bin/python -m pip install -q --no-deps --target "$compiled/site" "$compiled"/wheel/*.whl
SMTPMAIL_TEST_SOURCE="$compiled/site" SMTPMAIL_TEST_COMPILED=1 .venv/bin/python -m pytest -q -rfEs \
  tests/test_compiled_build.py tests/protocol tests/message tests/transport tests/hostile \
  tests/test_architecture.py tests/test_record.py -k "not mta"
