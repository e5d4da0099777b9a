#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt is configured with (the first `deb` source whose URI
# ends in /debian), read from apt's own configuration: deb822 files in /etc/apt/sources.list.d/
# and the one-line /etc/apt/sources.list. No mirror host is named in this repository.
# Exits 1 (with a message) when apt has no Debian source.
set -euo pipefail
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
  uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
  if [ -n "$uri" ]; then echo "${uri%/}"; exit 0; fi
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i ~ /^[a-z+]+:\/\// && $i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
  if [ -n "$uri" ]; then echo "${uri%/}"; exit 0; fi
done
echo "debian-mirror.sh: no Debian source in apt's configuration (/etc/apt/sources.list*)" >&2
exit 1
