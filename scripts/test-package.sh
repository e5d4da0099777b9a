#!/usr/bin/env bash
# The package test (root): Debian's own nebula 1.6.1 runs a tunnel in a throwaway Debian 12 root;
# our nebula-rs package is installed over it with apt and the node restarted the way its unit
# does; the tunnel must come back on our binary with the config untouched. Then `dpkg -r` must
# leave /etc/nebula in place, and lintian must report no errors for either package.
#
#   scripts/test-package.sh [DEB_DIR]     (default $CARGO_TARGET_DIR/debian or target/debian)
#
# The root is made by mmdebstrap from the host's own apt sources (cached under /var/tmp); it runs
# in network namespaces made here, facing a lighthouse (our nebula) in a second namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-package.sh: needs root" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
debs=${1:-$target/debian}
node_deb=$(ls -1t "$debs"/nebula-rs_*.deb 2>/dev/null | head -1 || true)
prov_deb=$(ls -1t "$debs"/nebula-provision_*.deb 2>/dev/null | head -1 || true)
[ -f "$node_deb" ] && [ -f "$prov_deb" ] || {
    echo "test-package.sh: no packages in $debs: run scripts/package.sh first" >&2
    exit 1
}
lighthouse_bin=$target/debug/nebula
[ -x "$lighthouse_bin" ] || lighthouse_bin=$target/release/nebula
[ -x "$lighthouse_bin" ] || { echo "test-package.sh: build nebula first" >&2; exit 1; }

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# Unique names, so a second run (or another test) never collides; everything goes on exit.
id=pk$$
ns_node=${id}n
ns_lh=${id}l
work=$(mktemp -d /tmp/nebula-package-test.XXXXXX)
root=$work/root
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns_node" 2>/dev/null || true
    ip netns del "$ns_lh" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

step "lintian: no errors in either package"
lintian_out=$(lintian "$node_deb" "$prov_deb" 2>&1 | grep -v 'running with root privileges' || true)
printf '%s\n' "$lintian_out"
if printf '%s\n' "$lintian_out" | grep -q '^E: '; then fail "lintian reported errors"; fi

step "a Debian 12 root with Debian's nebula"
packages=nebula,iproute2,iputils-ping,openssh-client,ca-certificates,systemd,procps
cache=/var/tmp/nebula-package-test-root-$(printf '%s' "bookworm $packages" | sha256sum | cut -c1-16).tar
if [ ! -s "$cache" ]; then
    mmdebstrap --quiet --variant=apt --format=tar --include="$packages" bookworm "$cache.part"
    mv "$cache.part" "$cache"
fi
mkdir -p "$root"
tar -C "$root" -xf "$cache"
chroot "$root" dpkg-query -W -f='${Version}\n' nebula | grep -q '^1\.6\.1' || fail "Debian's nebula 1.6.1 is not in the root"

step "PKI and configs (overlay 10.213.0.0/24)"
pki=$work/pki
mkdir -p "$pki" "$root/etc/nebula"
cert=$target/debug/nebula-cert
[ -x "$cert" ] || cert=/usr/bin/nebula-cert
(cd "$pki" && "$cert" ca -version 1 -name package-test -duration 24h \
    && "$cert" sign -version 1 -name lighthouse -ip 10.213.0.1/24 \
    && "$cert" sign -version 1 -name node -ip 10.213.0.2/24)
cp "$pki/ca.crt" "$root/etc/nebula/ca.crt"
cp "$pki/node.crt" "$root/etc/nebula/host.crt"
install -m 0600 "$pki/node.key" "$root/etc/nebula/host.key"
firewall='firewall:
  outbound: [{port: any, proto: any, host: any}]
  inbound: [{port: any, proto: any, host: any}]'
cat > "$root/etc/nebula/config.yml" <<YML
pki: {ca: /etc/nebula/ca.crt, cert: /etc/nebula/host.crt, key: /etc/nebula/host.key}
static_host_map: {"10.213.0.1": ["192.168.213.1:4242"]}
lighthouse: {am_lighthouse: false, interval: 5, hosts: ["10.213.0.1"]}
listen: {host: 0.0.0.0, port: 0}
tun: {dev: nebula1, mtu: 1300}
logging: {level: info}
$firewall
YML
cat > "$pki/lighthouse.yml" <<YML
pki: {ca: $pki/ca.crt, cert: $pki/lighthouse.crt, key: $pki/lighthouse.key}
static_host_map: {}
lighthouse: {am_lighthouse: true}
listen: {host: 0.0.0.0, port: 4242}
tun: {dev: nebula1, mtu: 1300}
control: {socket: ""}
logging: {level: info}
$firewall
YML
config_sum=$(sha256sum < "$root/etc/nebula/config.yml")

step "namespaces: the node (Debian root) and the lighthouse, on a veth pair"
ip netns add "$ns_node"
ip netns add "$ns_lh"
ip link add "${id}a" type veth peer name "${id}b"
ip link set "${id}a" netns "$ns_lh"
ip link set "${id}b" netns "$ns_node"
ip -n "$ns_lh" addr add 192.168.213.1/24 dev "${id}a"
ip -n "$ns_node" addr add 192.168.213.2/24 dev "${id}b"
for ns in "$ns_lh" "$ns_node"; do
    ip -n "$ns" link set lo up
done
ip -n "$ns_lh" link set "${id}a" up
ip -n "$ns_node" link set "${id}b" up
ip netns exec "$ns_lh" "$lighthouse_bin" -config "$pki/lighthouse.yml" > "$work/lighthouse.log" 2>&1 &
pids+=($!)

# Runs a command inside the root, with /dev and /proc mounted in a private mount namespace.
in_root() {
    unshare --mount --propagation private sh -c '
        root=$1; shift
        mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" && exec chroot "$root" "$@"' \
        sh "$root" "$@"
}

# Runs the node as both packages' nebula@config unit does: the launcher for instance `config`,
# inside the root (its /dev and /proc mounted in a private mount namespace).
start_node() {
    ip netns exec "$ns_node" unshare --mount --propagation private sh -c '
        mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && mkdir -p "$1/run" &&
        mount -t tmpfs tmpfs "$1/run" &&
        exec chroot "$1" /usr/lib/nebula/bin/nebula-systemd-launcher config' sh "$root" \
        >> "$work/node.log" 2>&1 &
    pids+=($!)
}
tunnel_up() { # seconds
    local i
    for i in $(seq 1 "$1"); do
        if ip netns exec "$ns_node" ping -c1 -W1 10.213.0.1 >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    return 1
}
node_pid() { # the nebula process in the node's namespace
    local p
    for p in $(ip netns pids "$ns_node"); do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = nebula ]; then echo "$p"; return 0; fi
    done
    return 1
}
stop_node() { # every process in the node's namespace, and wait until they are gone
    local p i
    for p in $(ip netns pids "$ns_node"); do kill "$p" 2>/dev/null || true; done
    for i in $(seq 1 50); do
        [ -z "$(ip netns pids "$ns_node")" ] && return 0
        sleep 0.2
    done
    fail "the node did not stop"
}

step "Debian's nebula 1.6.1 brings the tunnel up"
start_node
tunnel_up 30 || { cat "$work/node.log"; fail "no tunnel with Debian's nebula"; }
echo "tunnel up with $(chroot "$root" nebula -version)"
old_exe=$(readlink "/proc/$(node_pid)/exe")
[ "$old_exe" = "$root/usr/bin/nebula" ] || fail "the node runs $old_exe"

step "apt installs nebula-rs over it"
cp "$node_deb" "$prov_deb" "$root/tmp/"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    "/tmp/$(basename "$node_deb")" "/tmp/$(basename "$prov_deb")"
chroot "$root" dpkg-query -W -f='${Status}\n' nebula-rs | grep -q 'install ok installed' || fail "nebula-rs not installed"
if chroot "$root" dpkg-query -W -f='${Status}\n' nebula 2>/dev/null | grep -q 'ok installed'; then
    fail "Debian's nebula is still installed"
fi
chroot "$root" nebula -version | grep -q "Version: 0\." || fail "/usr/bin/nebula is not ours"
chroot "$root" nebula-provision --version | grep -q '^nebula-provision ' || fail "nebula-provision missing"
[ "$(sha256sum < "$root/etc/nebula/config.yml")" = "$config_sum" ] || fail "the upgrade changed config.yml"
[ -f "$root/etc/nebula/host.key" ] || fail "the upgrade lost host.key"
[ "$(stat -c %a "$root/etc/nebula")" = 750 ] || fail "/etc/nebula is not 0750"
for u in nebula.service nebula@.service; do
    [ -f "$root/lib/systemd/system/$u" ] || fail "$u not installed"
done
# The units as shipped: systemd must accept them (ExecStart paths resolved in the root).
SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="$root" \
    "$root/lib/systemd/system/nebula.service" "$root/lib/systemd/system/nebula@config.service" \
    2>&1 | tee "$work/verify.log"
if grep -v 'Failed to open /dev/tty\|hostnamed\|network-online' "$work/verify.log" | grep -q .; then
    fail "systemd-analyze verify complained about the packaged units"
fi
# The old process still runs the deleted 1.6.1 binary until restarted.
tunnel_up 5 || fail "the tunnel fell while the package was installed (before the restart)"

step "restart: the tunnel comes back on our binary"
stop_node
start_node
tunnel_up 30 || { cat "$work/node.log"; fail "no tunnel after the upgrade"; }
sleep 1
exe=$(readlink "/proc/$(node_pid)/exe" || true)
echo "node runs $exe"
[ "$exe" = "$root/usr/bin/nebula" ] || [ "$exe" = /usr/bin/nebula ] || fail "the node is not our binary ($exe)"
grep -q "Version: 0\.\|nebula-rs\|0\.1\.0" <<<"$(chroot "$root" /usr/bin/nebula -version)" || fail "version"
# Our status tool sees the lighthouse. The control socket is in the node's own /run (a tmpfs in
# its mount namespace, as the unit's RuntimeDirectory would be): ask from inside that namespace.
# The lighthouse counts as reachable once it has answered a probe: wait for that.
for i in $(seq 1 20); do
    status=$(nsenter -t "$(node_pid)" -m -n chroot "$root" nebula-ctl status 2>&1 || true)
    grep -q 'lighthouses 10.213.0.1 (up)' <<<"$status" && break
    sleep 1
done
printf '%s\n' "$status"
grep -q 'lighthouses 10.213.0.1 (up)' <<<"$status" || fail "nebula-ctl status: the lighthouse is not up"
grep -q '^lighthouse  *10.213.0.1  *direct 192.168.213.1:4242' <<<"$status" \
    || fail "nebula-ctl status: no direct tunnel to the lighthouse"

step "dpkg -r keeps /etc/nebula"
stop_node
in_root dpkg -r nebula-rs
[ ! -e "$root/usr/bin/nebula" ] || fail "dpkg -r left /usr/bin/nebula"
for f in config.yml ca.crt host.crt host.key config.yml.example; do
    [ -f "$root/etc/nebula/$f" ] || fail "dpkg -r removed /etc/nebula/$f"
done
[ "$(sha256sum < "$root/etc/nebula/config.yml")" = "$config_sum" ] || fail "dpkg -r changed config.yml"
in_root dpkg -P nebula-rs
[ ! -e "$root/etc/nebula/config.yml.example" ] || fail "purge left the shipped example"
[ -f "$root/etc/nebula/host.key" ] || fail "purge removed the operator's key"

step "package test passed"
