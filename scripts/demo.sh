#!/usr/bin/env bash
# The main job: a local demo mesh in network namespaces (needs root and nothing but this repo).
#   kshitiz  - the lighthouse, "public" on 192.0.2.1:4242
#   vyom-a   - an ingress VM, also on the "internet" segment
#   vyom-b   - an ingress VM behind a home NAT router (192.168.68.0/24 -> 192.0.2.3)
# It builds the binaries, makes a CA and certificates with our nebula-cert, starts three nebula
# daemons, shows the tunnels coming up, pings across the mesh, moves data, and cleans up (also on
# Ctrl-C). Traffic stays inside the namespaces this script creates.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (network namespaces and TUN devices)" >&2
  exit 1
fi
for tool in ip iptables nc; do
  command -v "$tool" >/dev/null || { echo "demo: installing dependencies"; bash scripts/install-deps.sh; break; }
done

echo "==> building nebula and nebula-cert (release)"
cargo build --release -q -p nebula-node -p nebula-cert
BIN=$PWD/target/release

P=demo$$
WORK=$(mktemp -d /tmp/nebula-demo.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for ns in "$P-kshitiz" "$P-vyom-a" "$P-vyom-b" "$P-router" "$P-wan"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "interrupted, cleaning up"; exit 130' INT TERM

echo "==> certificates (v1 CA, so Go 1.6.1 nodes could join too)"
cd "$WORK"
"$BIN/nebula-cert" ca -name "homelab demo CA" -version 1 -duration 24h
"$BIN/nebula-cert" sign -name kshitiz -networks 10.99.0.1/16 -groups lighthouse
"$BIN/nebula-cert" sign -name vyom-a -networks 10.99.0.2/16 -groups public-ingress
"$BIN/nebula-cert" sign -name vyom-b -networks 10.99.0.3/16 -groups public-ingress
"$BIN/nebula-cert" print -path vyom-b.crt | sed 's/^/    /'

echo "==> namespaces: wan switch, kshitiz, vyom-a, home router + vyom-b"
ip netns add "$P-wan"; ip -n "$P-wan" link add br0 type bridge; ip -n "$P-wan" link set br0 up
n=0
public() { # name ip
  local ns="$P-$1" a="dv$$$n" ; n=$((n+1))
  ip netns add "$ns"; ip -n "$ns" link set lo up
  ip link add "$a" netns "$ns" type veth peer name "${a}w" netns "$P-wan"
  ip -n "$P-wan" link set "${a}w" master br0 up
  ip -n "$ns" link set "$a" name eth0; ip -n "$ns" addr add "$2/24" dev eth0; ip -n "$ns" link set eth0 up
}
public kshitiz 192.0.2.1
public vyom-a 192.0.2.2
public router 192.0.2.3
ip netns add "$P-vyom-b"; ip -n "$P-vyom-b" link set lo up
ip link add "dl$$" netns "$P-vyom-b" type veth peer name lan0 netns "$P-router"
ip -n "$P-router" addr add 192.168.68.1/24 dev lan0; ip -n "$P-router" link set lan0 up
ip -n "$P-vyom-b" link set "dl$$" name eth0; ip -n "$P-vyom-b" addr add 192.168.68.200/24 dev eth0
ip -n "$P-vyom-b" link set eth0 up; ip -n "$P-vyom-b" route add default via 192.168.68.1
ip netns exec "$P-router" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$P-router" iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE

config() { # name am_lighthouse port
  cat <<EOF
pki:
  ca: $WORK/ca.crt
  cert: $WORK/$1.crt
  key: $WORK/$1.key
static_host_map:
  "10.99.0.1": ["192.0.2.1:4242"]
lighthouse:
  am_lighthouse: $2
  interval: 5
$( [ "$2" = false ] && printf '  hosts:\n    - "10.99.0.1"\n' )
listen:
  host: 0.0.0.0
  port: $3
punchy:
  punch: true
  respond: true
tun:
  dev: nebula1
  mtu: 1300
logging:
  level: info
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: icmp
      host: any
    - port: 5201
      proto: tcp
      group: public-ingress
EOF
}
config kshitiz true 4242 > kshitiz.yml
config vyom-a false 0 > vyom-a.yml
config vyom-b false 0 > vyom-b.yml
for h in kshitiz vyom-a vyom-b; do
  "$BIN/nebula" -test -config "$h.yml" >/dev/null
done
echo "    configs pass 'nebula -test'"

echo "==> starting nebula on kshitiz, vyom-a, vyom-b"
for h in kshitiz vyom-a vyom-b; do
  ip netns exec "$P-$h" "$BIN/nebula" -config "$h.yml" > "$h.log" 2>&1 &
  PIDS+=($!)
done

wait_ping() { # ns dst
  for _ in $(seq 1 30); do
    ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
  done
  return 1
}
echo "==> tunnels"
wait_ping "$P-vyom-a" 10.99.0.1 && echo "    vyom-a -> kshitiz (lighthouse): up"
wait_ping "$P-vyom-b" 10.99.0.1 && echo "    vyom-b (behind NAT) -> kshitiz: up"
wait_ping "$P-vyom-a" 10.99.0.3 && echo "    vyom-a -> vyom-b (via lighthouse query + hole punch): up"

echo "==> ping vyom-a -> vyom-b"
ip netns exec "$P-vyom-a" ping -c 3 10.99.0.3 | sed 's/^/    /'

echo "==> 20 MiB TCP vyom-a -> vyom-b:5201 (allowed by the firewall for group public-ingress)"
head -c 20M /dev/urandom > payload.bin
ip netns exec "$P-vyom-b" bash -c "timeout 60 nc -l 5201 > received.bin" &
sleep 0.5
start=$(date +%s.%N)
ip netns exec "$P-vyom-a" timeout 60 nc -N -w 10 10.99.0.3 5201 < payload.bin
end=$(date +%s.%N)
wait $! || true
if cmp -s payload.bin received.bin; then
  awk -v s="$start" -v e="$end" 'BEGIN { printf "    checksums match, %.1f MiB/s\n", 20 / (e - s) }'
else
  echo "    transfer FAILED"; exit 1
fi

echo "==> the firewall: TCP 22 to vyom-b is not allowed"
if ip netns exec "$P-vyom-a" timeout 3 nc -z -w 2 10.99.0.3 22; then
  echo "    port 22 reachable: UNEXPECTED"; exit 1
else
  echo "    port 22 blocked, as the rules say"
fi

echo "==> where vyom-a's packets to vyom-b go (direct, not through kshitiz):"
grep -h "tunnel up" vyom-a.log | sed 's/^/    /' | tail -3
echo "==> done; cleaning up"
