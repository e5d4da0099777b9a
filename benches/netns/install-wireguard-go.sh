#!/usr/bin/env bash
# Installs what the namespace throughput benchmark needs for its wireguard-go target:
#   wireguard-go 0.0.20250522 from Debian sid, unpacked (not installed) under $WIREGUARD_GO_DIR
#   (if sid has moved on, its version with a warning; DEBIAN_VERSION and UPSTREAM_VERSION say which)
#   wg (Debian package wireguard-tools) from the machine's own apt sources, to configure it.
# Uses a private apt state for sid so the machine's own sources are not touched; the mirror is
# the one apt is configured with (scripts/debian-mirror.sh).
set -euo pipefail
WIREGUARD_GO_DIR=${WIREGUARD_GO_DIR:-/opt/wireguard-go}
WANT=${WIREGUARD_GO_VERSION:-0.0.20250522}
export DEBIAN_FRONTEND=noninteractive

if ! command -v wg >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq wireguard-tools >/dev/null
fi

if [ -x "$WIREGUARD_GO_DIR/usr/bin/wireguard-go" ] && [ -s "$WIREGUARD_GO_DIR/UPSTREAM_VERSION" ]; then
  echo "wireguard-go $(cat "$WIREGUARD_GO_DIR/UPSTREAM_VERSION") already in $WIREGUARD_GO_DIR"
  exit 0
fi

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc/apt/sources.list.d" "$state/etc/apt/preferences.d"
mirror=$(bash "$(dirname "$0")/../../scripts/debian-mirror.sh")
cat > "$state/etc/apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main
SRC
opts=(-o Dir::Etc="$state/etc/apt" -o Dir::Etc::sourcelist="$state/etc/apt/sources.list"
  -o Dir::Etc::sourceparts="$state/etc/apt/sources.list.d" -o Dir::State::Lists="$state/lists"
  -o Dir::Cache="$state/cache" -o Dir::Etc::preferencesparts="$state/etc/apt/preferences.d"
  -o APT::Architecture=amd64 -o Debug::NoLocking=1)
apt-get "${opts[@]}" update -qq
# Debian's version string may differ from upstream's (sid's 0.0.20260522-1 builds upstream
# v0.0.20250522, see its changelog), so the check below is on what the binary itself reports.
ver=$(apt-cache "${opts[@]}" show wireguard-go | awk '/^Version:/{print $2; exit}')
[ -n "$ver" ] || { echo "install-wireguard-go: sid has no wireguard-go" >&2; exit 1; }
(cd "$state" && apt-get "${opts[@]}" download -qq "wireguard-go=$ver")
rm -rf "$WIREGUARD_GO_DIR"
mkdir -p "$WIREGUARD_GO_DIR"
dpkg -x "$state"/wireguard-go_*.deb "$WIREGUARD_GO_DIR"
echo "$ver" > "$WIREGUARD_GO_DIR/DEBIAN_VERSION"
upstream=$("$WIREGUARD_GO_DIR/usr/bin/wireguard-go" --version | awk '/^wireguard-go/{print $2; exit}')
echo "${upstream#v}" > "$WIREGUARD_GO_DIR/UPSTREAM_VERSION"
echo "unpacked wireguard-go $upstream (Debian $ver, sid) into $WIREGUARD_GO_DIR"
if [ "${upstream#v}" != "$WANT" ]; then
  echo "install-wireguard-go: WARNING: wanted upstream $WANT, sid's package is $upstream" >&2
fi
