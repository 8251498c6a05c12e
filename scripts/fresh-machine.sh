#!/usr/bin/env bash
# The README's two quick-start commands on a brand-new Debian 12 machine: a
# minimal bookworm root made with mmdebstrap (python3, git and ca-certificates
# only) holding a clean clone of this checkout's HEAD, entered with chroot
# (/proc, /sys and /dev bound). Runs `bash scripts/demo.sh`, then
# `bash scripts/test.sh` (arguments go to it, hence to pytest), prints PASS or
# FAIL with pytest's summary line and exits non-zero on failure.
#
# The root reaches the package registries as this machine does: it gets this
# machine's apt sources and local apt settings (the apt.conf.d files no package
# owns, auth.conf.d), pip and npm configuration files, CA certificates, and the
# environment variables that configure pip, npm, proxies and CA files. Local
# directories those settings name (wheel caches, file:// indexes) are not
# copied: a fresh machine has only the registries.
#
# Needs root (mmdebstrap, mount, chroot). --keep leaves the root in place.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

keep=""
if [ "${1:-}" = "--keep" ]; then keep=1; shift; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-machine.sh needs root (mmdebstrap, mount, chroot)" >&2
  exit 1
fi
command -v mmdebstrap >/dev/null || apt_install mmdebstrap

started=$(date +%s)
ROOT=$(mktemp -d /tmp/smtpmail-fresh.XXXXXX)
LOG=$ROOT.log
CHECKOUT=/root/smtpmail

# Processes still running inside the root (daemons a test left behind) hold its
# mounts; they are ours, found by their root directory.
stop_inside() {
  local proc pid
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$ROOT" ] && kill -9 "$pid" 2>/dev/null
  done
  return 0
}

cleanup() {
  stop_inside
  if mountpoint -q "$ROOT"; then
    umount -R "$ROOT" 2>/dev/null || umount -R -l "$ROOT"
  fi
  if grep -q " $ROOT/" /proc/self/mountinfo; then
    echo "still mounted under $ROOT: left in place" >&2
  elif [ -z "$keep" ]; then
    rm -rf --one-file-system "$ROOT"
  else
    echo "root kept: $ROOT"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- build --------------------------------------------------------------------

# This machine's apt sources: every file apt reads.
sources=()
grep -qsv '^\s*\(#\|$\)' /etc/apt/sources.list && sources+=(/etc/apt/sources.list)
for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$file" ] && sources+=("$file")
done
if [ "${#sources[@]}" -eq 0 ]; then
  echo "no apt sources on this machine" >&2
  exit 1
fi
# Its local apt settings (proxies, mirrors, validity checks): the files no package owns.
aptopts=()
for file in /etc/apt/apt.conf.d/*; do
  [ -f "$file" ] && ! dpkg -S "$file" >/dev/null 2>&1 && aptopts+=("--aptopt=$file")
done
# shellcheck disable=SC2016 # expanded by mmdebstrap's sh, $1 being the root
auth_hook='mkdir -p "$1/etc/apt/auth.conf.d"; for f in /etc/apt/auth.conf /etc/apt/auth.conf.d/*; do
  [ -f "$f" ] && cp -a "$f" "$1$f"; done; true'

echo "== mmdebstrap bookworm into $ROOT (log: $LOG)"
mmdebstrap --variant=apt --include=python3,git,ca-certificates \
  "${aptopts[@]}" --setup-hook="$auth_hook" \
  bookworm "$ROOT" "${sources[@]}" >"$LOG" 2>&1 || {
  tail -20 "$LOG"
  echo "FAIL: mmdebstrap could not build the root"
  exit 1
}

# No service starts inside the root (Postfix's installer would start one): the
# tests start their own servers, not through invoke-rc.d.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp /etc/hosts "$ROOT/etc/hosts"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

# copy_in PATH...: each existing file or directory, to the same place in the root.
copy_in() {
  local path
  for path in "$@"; do
    [ -e "$path" ] || continue
    mkdir -p "$ROOT$(dirname "$path")"
    cp -a "$path" "$ROOT$(dirname "$path")/"
  done
}

# The environment that configures the package clients, and the files it names.
passed=()
while IFS='=' read -r name _; do
  case "$name" in
    PIP_* | NPM_CONFIG_* | npm_config_* | *_proxy | *_PROXY | SSL_CERT_FILE | SSL_CERT_DIR | \
      NODE_EXTRA_CA_CERTS | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE | GIT_SSL_CAINFO)
      passed+=("$name=${!name}")
      [ -f "${!name}" ] && copy_in "${!name}"
      ;;
  esac
done < <(env)

# CA certificates added on this machine, then the bundles built from them.
copy_in /usr/local/share/ca-certificates
chroot "$ROOT" update-ca-certificates >>"$LOG" 2>&1
copy_in /etc/ssl/certs/ca-certificates.crt
# pip and npm configuration files.
copy_in /etc/pip.conf /etc/xdg/pip /etc/npmrc /usr/etc/npmrc /usr/local/etc/npmrc
for file in .config/pip .pip .npmrc; do
  if [ -e "$HOME/$file" ]; then
    mkdir -p "$ROOT/root/$(dirname "$file")"
    cp -a "$HOME/$file" "$ROOT/root/$(dirname "$file")/"
  fi
done

# A clean clone of the checkout's HEAD (no .venv, no node_modules, no edits).
git clone -q --no-hardlinks "$PWD" "$ROOT$CHECKOUT"
echo "== checkout: $(git -C "$ROOT$CHECKOUT" log -1 --format='%h %s')"

# -- run ----------------------------------------------------------------------

# The root is a mount point, as / is on a machine: `ip netns exec` (the DANE and
# outbox soak tests' namespaces) remounts / as a slave and fails on a plain folder.
mount --bind "$ROOT" "$ROOT"
mount --bind /proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount --make-rslave "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount --make-rslave "$ROOT/dev"

# inside CMD...: run CMD in the checkout inside the root, with a clean environment.
# shellcheck disable=SC2016 # expanded by the bash inside
inside() {
  chroot "$ROOT" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root USER=root LANG=C.UTF-8 TERM="${TERM:-dumb}" "${passed[@]}" \
    /bin/bash -c 'cd "$0" && "$@"' "$CHECKOUT" "$@"
}

status=0
echo "== bash scripts/demo.sh"
inside bash scripts/demo.sh 2>&1 | tee -a "$LOG" || status=1
demo=$status
echo "== bash scripts/test.sh $*"
inside bash scripts/test.sh "$@" 2>&1 | tee -a "$LOG" || status=1

summary=$(grep -E '^[0-9]+ (passed|failed|errors?|skipped|deselected)|no tests ran' "$LOG" | tail -1)
elapsed=$(($(date +%s) - started))
echo
echo "== fresh Debian 12, $((elapsed / 60)) min $((elapsed % 60)) s: demo.sh $([ "$demo" -eq 0 ] && echo ok || echo FAILED)"
echo "== pytest: ${summary:-no summary line (see the output above)}"
if [ "$status" -eq 0 ]; then echo "PASS"; else echo "FAIL"; fi
exit "$status"
