#!/usr/bin/env bash
# Installs the tools nebula-provision's tests drive (run as root on Debian 12):
#   apt:  systemd (systemd-analyze), openssh-server/-client (apply test), nftables, iproute2, ping,
#         curl and python3 (HTTP server and client in the namespace test), mmdebstrap (the Debian
#         root the Ansible role really runs against, tests/debian-root.sh)
#   PyPI: ansible-core (ansible-playbook), ansible-lint (pinned: it must know the installed
#         ansible-core), python-hcl2 (parses the Terraform file),
#         and the Python libraries cloud-init's schema checker needs
#   cloud-init's own code, unpacked from Debian's package into /opt (not installed as a service,
#         so nothing runs at boot) for `cloud-init schema`.
# Everything Python goes into one venv, /opt/nebula-provision-tools; the tests look there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in systemd openssh-server openssh-client nftables iproute2 iputils-ping util-linux curl python3 python3-venv mmdebstrap openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

venv=/opt/nebula-provision-tools
ansible_lint=26.10.1
if ! "$venv/bin/python" -c 'import ansible, hcl2, yaml, jsonschema, jinja2, configobj, jsonpatch, requests' >/dev/null 2>&1 \
  || [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ansible-lint"))' 2>/dev/null)" != "$ansible_lint" ]; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'ansible-core>=2.16.19,!=2.17.*' "ansible-lint==$ansible_lint" 'python-hcl2>=4' pyyaml jsonschema jinja2 configobj jsonpatch requests
fi

ci=/opt/nebula-provision-tools/cloud-init
if [ ! -d "$ci/usr/lib/python3/dist-packages/cloudinit" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download -qq cloud-init >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq cloud-init >/dev/null)
  fi
  rm -rf "$ci"
  dpkg -x "$tmp"/cloud-init_*.deb "$ci"
fi
