#!/usr/bin/env bash
# Builds a throwaway Debian bookworm root as a tarball for tests that need a real target system
# (the Ansible role's real run): python3, openssh-server, iproute2 and python3-apt, plus any extra
# packages given. Usage: debian-root.sh OUT.tar [EXTRA_PACKAGE...]
# Uses mmdebstrap with the host's apt sources (no mirror is named here). Needs root.
# A cache under /var/tmp, keyed by the package list, makes repeated calls a copy:
# the first build takes ~35 s.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUT.tar [EXTRA_PACKAGE...]" >&2
  exit 2
fi
out=$1
shift
pkgs=(python3 python3-apt openssh-server iproute2 ca-certificates "$@")
list=$(printf '%s\n' "${pkgs[@]}" | LC_ALL=C sort -u | paste -sd, -)
key=$(printf '%s' "bookworm apt $list" | sha256sum | cut -c1-16)
cache=/var/tmp/nebula-provision-debian-root-$key.tar
# One build per key at a time (tests run in parallel); the others wait and copy.
exec 9>"$cache.lock"
flock 9
if [ ! -s "$cache" ]; then
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: run nebula-provision/tests/install-test-deps.sh" >&2; exit 1; }
  tmp=$(mktemp "$cache.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  mmdebstrap --quiet --variant=apt --format=tar --include="$list" bookworm "$tmp"
  mv "$tmp" "$cache"
  trap - EXIT
fi
if [ "$out" != "$cache" ]; then
  ln -f "$cache" "$out" 2>/dev/null || cp "$cache" "$out"
fi
echo "$cache"
