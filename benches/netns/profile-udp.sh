#!/usr/bin/env bash
# Where the time goes on the UDP path: two namespaces joined by a veth, our nebula on both sides
# (or Go's, with --go), iperf3 UDP at a fixed offered rate. Prints who used the CPU (both daemons,
# iperf3 client and server), where datagrams were lost (the TUN's transmit ring on the sending
# side, the UDP socket buffers, the receiver) and, with --perf, the hottest symbols per daemon.
#
# usage: sudo bash benches/netns/profile-udp.sh [--rate 2000M] [--seconds 8] [--routines N]
#                                                [--tx-queue N] [--no-offloads] [--go] [--perf]
#                                                [--strace]
# Traffic stays inside the two namespaces this script creates (and removes).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RATE=2000M
SECONDS_RUN=8
ROUTINES=1
TXQ=500
BIN=$ROOT/target/release/nebula
CERT=/opt/go-nebula/1.11.0/usr/bin/nebula-cert
PERF=""
STRACE=""
OFFLOADS=true
while [ $# -gt 0 ]; do
  case $1 in
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --routines) ROUTINES=$2; shift 2 ;;
    --tx-queue) TXQ=$2; shift 2 ;;
    --no-offloads) OFFLOADS=false; shift ;;
    --go) BIN=/opt/go-nebula/1.11.0/usr/bin/nebula; shift ;;
    --perf) PERF=1; shift ;;
    --strace) STRACE=1; shift ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "profile-udp: no binary at $BIN (cargo build --release -p nebula-node)" >&2; exit 1; }
[ -x "$CERT" ] || CERT=$ROOT/target/release/nebula-cert

P=npu$$
NA=$P-a
NB=$P-b
W=$(mktemp -d /tmp/nebula-profile.XXXXXX)
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for ns in "$NA" "$NB"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT

ip netns add "$NA" && ip netns add "$NB" || exit 1
ip -n "$NA" link set lo up && ip -n "$NB" link set lo up
ip link add "${P}x" netns "$NA" type veth peer name "${P}y" netns "$NB" || exit 1
ip -n "$NA" link set "${P}x" name eth0 && ip -n "$NB" link set "${P}y" name eth0
ip -n "$NA" addr add 192.0.2.1/24 dev eth0 && ip -n "$NB" addr add 192.0.2.2/24 dev eth0
ip -n "$NA" link set eth0 up && ip -n "$NB" link set eth0 up

(cd "$W" &&
  "$CERT" ca -name "profile CA" -duration 24h -out-crt ca.crt -out-key ca.key &&
  "$CERT" sign -ca-crt ca.crt -ca-key ca.key -name a -ip 10.200.0.1/24 -out-crt a.crt -out-key a.key &&
  "$CERT" sign -ca-crt ca.crt -ca-key ca.key -name b -ip 10.200.0.2/24 -out-crt b.crt -out-key b.key) \
  > "$W/pki.log" 2>&1 || { cat "$W/pki.log" >&2; exit 1; }
config() { # side peer-overlay peer-underlay
  cat <<EOF
pki: {ca: $W/ca.crt, cert: $W/$1.crt, key: $W/$1.key}
static_host_map: {"$2": ["$3:4242"]}
listen: {host: 0.0.0.0, port: 4242, udp_offloads: $OFFLOADS}
punchy: {punch: false}
tun: {dev: nb0, mtu: 1420, tx_queue: $TXQ, use_offloads: $OFFLOADS}
logging: {level: info}
firewall:
  outbound: [{port: any, proto: any, host: any}]
  inbound: [{port: any, proto: any, host: any}]
EOF
  [ "$ROUTINES" -gt 1 ] && echo "routines: $ROUTINES"
  return 0
}
config a 10.200.0.2 192.0.2.2 > "$W/a.yml"
config b 10.200.0.1 192.0.2.1 > "$W/b.yml"
ip netns exec "$NA" "$BIN" -config "$W/a.yml" > "$W/a.log" 2>&1 & PA=$!
ip netns exec "$NB" "$BIN" -config "$W/b.yml" > "$W/b.log" 2>&1 & PB=$!
PIDS+=("$PA" "$PB")
up=""
for _ in $(seq 1 50); do
  ip netns exec "$NA" ping -c1 -W1 10.200.0.2 > /dev/null 2>&1 && { up=1; break; }
  sleep 0.2
done
[ -n "$up" ] || { echo "profile-udp: tunnel did not come up" >&2; tail "$W/a.log" "$W/b.log" >&2; exit 1; }

ip netns exec "$NB" iperf3 -s -1 -p 5201 > "$W/server.log" 2>&1 & PS=$!
PIDS+=("$PS")
sleep 0.5
ip netns exec "$NA" nstat -n
ip netns exec "$NB" nstat -n
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ip netns exec "$NA" iperf3 -c 10.200.0.2 -u -b "$RATE" -l 1392 -w 4M -t "$SECONDS_RUN" -J > "$W/client.json" & PC=$!
PIDS+=("$PC")
sleep 0.3
a0=$(ticks "$PA"); b0=$(ticks "$PB"); s0=$(ticks "$PS"); c0=$(ticks "$PC")
if [ -n "$PERF" ]; then
  perf record -g -o "$W/perf.data" -p "$PA,$PB" -- sleep $((SECONDS_RUN - 2)) > /dev/null 2>&1 &
  PP=$!
fi
if [ -n "$STRACE" ]; then
  timeout $((SECONDS_RUN - 2)) strace -c -f -p "$PA" -o "$W/strace-a.txt" 2> /dev/null &
  timeout $((SECONDS_RUN - 2)) strace -c -f -p "$PB" -o "$W/strace-b.txt" 2> /dev/null &
fi
sleep $((SECONDS_RUN - 1))
# sampled together, before the client ends the test (and the one-shot server exits)
a1=$(ticks "$PA"); b1=$(ticks "$PB"); s1=$(ticks "$PS"); c1=$(ticks "$PC")
wait "$PC"
[ -n "$PERF" ] && wait "$PP"
wait "$PS" 2> /dev/null
sleep 0.5

hz=$(getconf CLK_TCK)
pct() { awk -v t="$1" -v h="$hz" -v s="$2" 'BEGIN { printf "%3.0f%%", 100 * t / h / s }'; }
python3 - "$W/client.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
s = j["end"]["sum"]
print("offered %.0f Mbit/s, received %.0f Mbit/s, loss %.2f%% (%d of %d datagrams)" % (
    s["bits_per_second"] / 1e6, s["bits_per_second"] / 1e6 * (1 - s["lost_percent"] / 100),
    s["lost_percent"], s["lost_packets"], s["packets"]))
EOF
span=$((SECONDS_RUN - 1))
echo "CPU (share of one core) over ${span} s of the run: daemon a (sends) $(pct $((a1 - a0)) $span), daemon b (receives) $(pct $((b1 - b0)) $span), iperf3 client $(pct $((c1 - c0)) $span), iperf3 server $(pct $((s1 - s0)) $span)"
tx_dropped() { ip -n "$1" -s -j link show nb0 | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(s["tx"]["packets"], s["tx"]["dropped"], s["rx"]["packets"])'; }
read -r atx adrop _ <<< "$(tx_dropped "$NA")"
read -r _ _ brx <<< "$(tx_dropped "$NB")"
echo "sender's TUN: $atx packets handed to the daemon, $adrop dropped (transmit ring full: the daemon was not scheduled in time)"
echo "receiver's TUN: $brx writes (coalesced superpackets)"
for side in "a:$NA" "b:$NB"; do
  echo "UDP socket drops in ${side%%:*} (the daemon's and iperf3's sockets): $(ip netns exec "${side#*:}" nstat -az 2>/dev/null | awk '/UdpRcvbufErrors|UdpSndbufErrors|UdpInErrors/ { printf "%s=%s ", $1, $2 }')"
done
if [ -n "$PERF" ]; then
  echo "hottest symbols (share of all samples in both daemons):"
  perf report -i "$W/perf.data" --no-children --sort pid,sym --stdio -g none 2> /dev/null |
    grep -v '^#' | grep -v '^$' | head -25
fi
if [ -n "$STRACE" ]; then
  for s in a b; do
    echo "syscalls of daemon $s:"
    head -12 "$W/strace-$s.txt"
  done
fi
