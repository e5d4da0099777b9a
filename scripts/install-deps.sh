#!/usr/bin/env bash
# Installs everything the test suite and the demo need on a fresh Debian 12 machine (run as root):
# system packages, and the Go Nebula reference builds (1.6.1 from bookworm; 1.9.3 and 1.11.0 unpacked).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in nebula iproute2 iptables nftables iperf3 openssl tcpdump procps psmisc kmod ca-certificates curl netcat-openbsd iputils-ping bc prometheus bind9-dnsutils openssh-client python3 mmdebstrap lintian help2man systemd; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash "$(dirname "$0")/../.ci/install-go-nebula.sh"
# cargo-deb builds the Debian packages (scripts/package.sh); pinned, since it plans to refuse the
# dev profile the package test uses.
if ! cargo deb --version 2>/dev/null | grep -qx 'cargo-deb 3.8.0'; then
  cargo install cargo-deb --version 3.8.0 --locked --debug --quiet
fi
# TUN and namespaces are needed by the end-to-end tests.
[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun; }
# Tools the provisioning tests drive (systemd-analyze, sshd, ansible-core, cloud-init schema...).
bash "$(dirname "$0")/../nebula-provision/tests/install-test-deps.sh"
