# shellcheck shell=bash
# Shell functions shared by scripts/demo.sh, scripts/test.sh and bench/run.sh
# (sourced, not run). Each installs only what is missing, and checks what is
# there by using it, never by the mere existence of a path.

# as_root CMD...: run CMD as root, through sudo when this user is not root.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# installed PKG: whether dpkg lists the Debian package PKG as installed.
installed() {
  dpkg-query -W -f='${db:Status-Abbrev}\n' "$1" 2>/dev/null | grep -q '^ii'
}

# missing_packages PKG...: the packages among PKG... that are not installed.
missing_packages() {
  local pkg
  for pkg in "$@"; do
    installed "$pkg" || echo "$pkg"
  done
}

# apt_update: refresh the package lists, once per run of a script.
apt_update() {
  if [ -z "${_SMTPMAIL_APT_UPDATED:-}" ]; then
    as_root apt-get update -q -o DPkg::Lock::Timeout=600
    _SMTPMAIL_APT_UPDATED=1
  fi
}

# apt_install PKG...: install Debian packages with their dependencies, without
# Recommends. --no-remove: apt aborts rather than remove an installed package
# to make room (a conflicting mail server must never replace Postfix).
apt_install() {
  [ "$#" -gt 0 ] || return 0
  if ! command -v apt-get >/dev/null; then
    echo "apt-get is needed to install the Debian packages $*" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  as_root apt-get install -y -q --no-install-recommends --no-remove \
    -o DPkg::Lock::Timeout=600 "$@"
}

# make_venv DIR: a virtual environment with a working pip in DIR, made with
# ${PYTHON:-python3}. Debian's Python has no ensurepip (so no venv) until
# python3.X-venv is installed; a half-made DIR from such a failure is redone.
make_venv() {
  local dir=$1 py=${PYTHON:-python3} version
  if "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
    return 0
  fi
  if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
    version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    apt_install "python$version-venv"
  fi
  rm -rf "$dir"
  "$py" -m venv "$dir"
}

# runtime_depends PKG: the Debian packages that PKG's Depends and Pre-Depends
# name, one a line: of each group of alternatives, the first one that is a real
# package (not a virtual one), and none of PKG's own pieces, the binary packages
# built from its source (exim4-daemon-light's exim4-base pulls in exim4-config,
# which conflicts with Postfix; a test configures its server itself).
runtime_depends() {
  local pkg=$1 groups names
  groups=$(apt-cache show --no-all-versions "$pkg" \
    | awk '/^(Pre-)?Depends: / { sub(/^[^:]*: /, ""); print }' \
    | tr ',' '\n' | sed -e 's/([^)]*)//g' -e 's/:any//g' -e 's/  */ /g')
  names=$(tr '|' '\n' <<<"$groups" | tr -d ' ' | sort -u)
  # "package source" for PKG and each alternative with a candidate version.
  local -A source_of=()
  local name src
  while read -r name src; do
    source_of[$name]=$src
  done < <(
    # shellcheck disable=SC2086
    apt-cache show --no-all-versions "$pkg" $names 2>/dev/null | awk '
      /^Package: / { package = $2; source = $2 }
      /^Source: /  { source = $2 }
      /^$/         { if (package) print package, source; package = "" }
      END          { if (package) print package, source }'
  )
  local own=${source_of[$pkg]:?"apt does not know $pkg"} group alt found
  while IFS= read -r group; do
    [ -n "${group// /}" ] || continue
    found=""
    for alt in ${group//|/ }; do
      if [ -n "${source_of[$alt]:-}" ]; then found=$alt; break; fi
    done
    if [ -z "$found" ]; then
      echo "no real package among the alternatives '$group' that $pkg depends on" >&2
      return 1
    fi
    [ "${source_of[$found]}" = "$own" ] || echo "$found"
  done <<<"$groups"
}

# unresolved_libraries DIR [FIND-TEST...]: each file under DIR (by default each
# program or library; else those FIND-TEST selects) whose shared libraries the
# dynamic linker cannot find, with the missing ones.
unresolved_libraries() {
  local dir=$1 file missing
  shift
  [ "$#" -gt 0 ] || set -- \( -perm -u+x -o -name '*.so*' \)
  while IFS= read -r -d '' file; do
    missing=$(ldd "$file" 2>/dev/null | awk '/not found/ { printf " %s", $1 }')
    [ -z "$missing" ] || echo "$file:$missing"
  done < <(find "$dir" -type f "$@" -print0)
}

# unpack_deb PKG ROOT: download PKG's .deb from the configured archive and
# unpack it (dpkg-deb -x: nothing is installed, no maintainer script runs) into
# ROOT, replacing ROOT whole only once the unpacking succeeded.
unpack_deb() {
  local pkg=$1 root=$2 work
  mkdir -p "$(dirname "$root")"
  work=$(mktemp -d "$root.XXXXXX")
  chmod 777 "$work" # apt downloads as its sandbox user (_apt)
  (cd "$work" && apt-get download -q "$pkg")
  dpkg-deb -x "$work/${pkg}_"*.deb "$work/root"
  rm -rf "$root"
  mv "$work/root" "$root"
  rm -rf "$work"
}
