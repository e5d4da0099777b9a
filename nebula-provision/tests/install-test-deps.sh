#!/usr/bin/env bash
# Installs the tools nebula-provision's tests drive (run as root on Debian 12): systemd-analyze,
# sshd/ssh/scp, nft, ip, curl, python3 (HTTP server in the namespace test) and ansible-core (PyPI).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in systemd openssh-server openssh-client nftables iproute2 curl python3 python3-pip python3-venv; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# ansible-core from PyPI, in its own venv so it cannot disturb the system Python; the tests look for
# `ansible-playbook` on PATH, then in this venv.
venv=/opt/nebula-provision-ansible
if ! "$venv/bin/ansible-playbook" --version >/dev/null 2>&1; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'ansible-core>=2.14'
fi
