#!/usr/bin/env bash
# Installs the reference Go Nebula builds the interop tests run against:
#   1.6.1  from Debian 12 (bookworm) via apt, in /usr/bin
#   1.9.3  (trixie) and 1.11.0 (sid) unpacked, not installed, under $GO_NEBULA_DIR/<version>/
# Uses a private apt state so the machine's own sources are not touched; the mirror is the one
# apt is configured with (scripts/debian-mirror.sh).
set -euo pipefail
GO_NEBULA_DIR=${GO_NEBULA_DIR:-/opt/go-nebula}
export DEBIAN_FRONTEND=noninteractive

if ! command -v nebula-cert >/dev/null 2>&1 || ! command -v nebula >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq nebula >/dev/null
fi

fetch_suite() { # suite wanted-version-prefix
  local suite=$1 want=$2 dest="$GO_NEBULA_DIR/$2"
  if [ -x "$dest/usr/bin/nebula" ] && [ -x "$dest/usr/bin/nebula-cert" ]; then return 0; fi
  local state; state=$(mktemp -d)
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc/apt/sources.list.d" "$state/etc/apt/preferences.d"
  local mirror; mirror=$(bash "$(dirname "$0")/../scripts/debian-mirror.sh")
  cat > "$state/etc/apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
SRC
  local opts=(-o Dir::Etc="$state/etc/apt" -o Dir::Etc::sourcelist="$state/etc/apt/sources.list"
    -o Dir::Etc::sourceparts="$state/etc/apt/sources.list.d" -o Dir::State::Lists="$state/lists"
    -o Dir::Cache="$state/cache" -o Dir::Etc::preferencesparts="$state/etc/apt/preferences.d"
    -o APT::Architecture=amd64 -o Debug::NoLocking=1)
  apt-get "${opts[@]}" update -qq
  local ver; ver=$(apt-cache "${opts[@]}" show nebula | awk '/^Version:/{print $2; exit}')
  (cd "$state" && apt-get "${opts[@]}" download -qq "nebula=$ver")
  mkdir -p "$dest"
  dpkg -x "$state"/nebula_*.deb "$dest"
  echo "$ver" > "$dest/DEBIAN_VERSION"
  rm -rf "$state"
  echo "unpacked nebula $ver ($suite) into $dest"
}

fetch_suite sid 1.11.0
fetch_suite trixie 1.9.3
"$GO_NEBULA_DIR/1.11.0/usr/bin/nebula-cert" -version
nebula-cert -version
