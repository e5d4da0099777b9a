#!/usr/bin/env bash
# Namespace throughput benchmark: bare veth vs Go Nebula 1.11.0 vs our nebula vs wireguard-go.
# Two network namespaces joined by a veth hold both tunnel ends and the iperf3 client and server;
# targets run interleaved for several rounds and a table of medians (with ratios to Go's) is printed.
#
#   sudo bash benches/netns/throughput.sh --rounds 3 [-o results.json]      (see --help)
#
# No traffic leaves the namespaces: they have no default route and only their own addresses.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ROUNDS=3
OUT=""
DURATION=5        # seconds per TCP test
UDP_DURATION=3    # seconds per UDP rate step
UDP_STEPS=9       # at most this many UDP rate steps per target and round
UDP_START=400     # Mbit/s, first UDP rate tried
MAX_LOSS=1        # percent
UDP_WINDOW=4M     # iperf3 -w for UDP: socket buffers of iperf3's own sockets (not the daemons')
MTU=1420
CIPHER=aes
BUFFERS=""        # listen.read_buffer / write_buffer for both nebulas; empty = their default
TARGETS="veth,go-1.11.0,ours,ours-2,wireguard-go"
OURS=$ROOT/target/release/nebula
OURS_BEFORE=""    # a second build of ours (e.g. the commit before a change), target ours-before
GO_NEBULA=/opt/go-nebula/1.11.0/usr/bin/nebula
GO_CERT=/opt/go-nebula/1.11.0/usr/bin/nebula-cert
WG_GO=/opt/wireguard-go/usr/bin/wireguard-go
KEEP_LOGS=""

usage() {
  cat <<EOF
usage: sudo bash benches/netns/throughput.sh [options]
  --rounds N          rounds; each runs every target once, in order (default $ROUNDS)
  -o FILE             also write the results (raw rounds, medians, ratios) as JSON to FILE
  --targets LIST      comma-separated subset of: veth,go-1.11.0,ours,ours-2,ours-before,wireguard-go
                      (default all; ours-2 is ours with routines: 2)
  --duration S        seconds per TCP test (default $DURATION); UDP steps last $UDP_DURATION s
  --mtu N             tunnel MTU, also the bare veth's (default $MTU)
  --cipher C          nebula cipher, aes or chachapoly (default $CIPHER; WireGuard has only ChaCha20)
  --udp-window SIZE   iperf3 -w for the UDP tests (default $UDP_WINDOW; "" = iperf3's default). Big
                      buffers on iperf3's own sockets keep its descheduling on a busy machine from
                      counting as loss; the daemons' sockets are left alone
  --buffers BYTES     set listen.read_buffer and listen.write_buffer for both nebulas (default: unset)
  --ours PATH         our nebula binary (default $OURS)
  --ours-before PATH  another build of ours, run as target ours-before (a before/after comparison
                      interleaved in the same run; add ours-before to --targets)
  --go PATH           Go nebula binary (default $GO_NEBULA)
  --wireguard-go PATH wireguard-go binary (default $WG_GO; install: benches/netns/install-wireguard-go.sh)
  --keep-logs DIR     copy daemon logs, iperf3 JSON outputs and raw results into DIR
EOF
}

while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    -o|--output) OUT=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --mtu) MTU=$2; shift 2 ;;
    --cipher) CIPHER=$2; shift 2 ;;
    --buffers) BUFFERS=$2; shift 2 ;;
    --udp-window) UDP_WINDOW=$2; shift 2 ;;
    --ours) OURS=$2; shift 2 ;;
    --ours-before) OURS_BEFORE=$2; shift 2 ;;
    --go) GO_NEBULA=$2; shift 2 ;;
    --wireguard-go) WG_GO=$2; shift 2 ;;
    --keep-logs) KEEP_LOGS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "throughput: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case $ROUNDS in ''|*[!0-9]*|0) echo "throughput: --rounds wants a positive integer" >&2; exit 2 ;; esac
case $CIPHER in aes|chachapoly) ;; *) echo "throughput: --cipher is aes or chachapoly" >&2; exit 2 ;; esac
if [ -n "$OUT" ]; then OUT=$(realpath -m "$OUT"); fi

if [ "$(id -u)" != 0 ]; then
  echo "throughput: needs root (network namespaces, TUN devices)" >&2
  exit 1
fi
PY=$(command -v python3 || echo /usr/bin/python3)
missing=()
for tool in ip iperf3 ping ss timeout "$PY"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "throughput: missing ${missing[*]} (apt-get install iproute2 iperf3 iputils-ping python3)" >&2
  exit 1
fi
CERT_BIN=$GO_CERT
[ -x "$CERT_BIN" ] || CERT_BIN=$ROOT/target/release/nebula-cert
[ -x "$CERT_BIN" ] || { echo "throughput: no nebula-cert (neither $GO_CERT nor ours)" >&2; exit 1; }

P=nbt$$                       # unique prefix: namespaces, interface names, sockets
NA=$P-a
NB=$P-b
WGA=wg$$a                     # wireguard-go's UAPI sockets live in the shared /var/run/wireguard
WGB=wg$$b
WORK=$(mktemp -d /tmp/nebula-bench.XXXXXX)
mkdir -p "$WORK/logs" "$WORK/pki"
RESULTS=$WORK/results.jsonl
DAEMONS=()
SERVER_PID=""
CLK_TCK=$(getconf CLK_TCK)

cleanup() {
  set +e
  stop_daemons
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
  for ns in "$NA" "$NB"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -f "/var/run/wireguard/$WGA.sock" "/var/run/wireguard/$WGB.sock"
  if [ -n "$KEEP_LOGS" ] && [ -d "$WORK" ]; then
    mkdir -p "$KEEP_LOGS" && cp -r "$WORK/logs" "$WORK"/*.json "$WORK"/*.err "$RESULTS" "$KEEP_LOGS/" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "throughput: interrupted, cleaning up" >&2; exit 130' INT TERM

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- namespaces
# eth0: the underlay (1500) the tunnels run over, 192.0.2.1 <-> 192.0.2.2.
# bare0: a second veth pair at the tunnel MTU for the bare baseline, 198.51.100.1 <-> .2.
setup_namespaces() {
  ip netns add "$NA" && ip netns add "$NB" || return 1
  ip -n "$NA" link set lo up && ip -n "$NB" link set lo up || return 1
  ip link add "${P}x" netns "$NA" type veth peer name "${P}y" netns "$NB" || return 1
  ip -n "$NA" link set "${P}x" name eth0 && ip -n "$NB" link set "${P}y" name eth0 || return 1
  ip -n "$NA" addr add 192.0.2.1/24 dev eth0 && ip -n "$NB" addr add 192.0.2.2/24 dev eth0 || return 1
  ip -n "$NA" link set eth0 up && ip -n "$NB" link set eth0 up || return 1
  ip link add "${P}p" netns "$NA" type veth peer name "${P}q" netns "$NB" || return 1
  ip -n "$NA" link set "${P}p" name bare0 && ip -n "$NB" link set "${P}q" name bare0 || return 1
  ip -n "$NA" link set bare0 mtu "$MTU" && ip -n "$NB" link set bare0 mtu "$MTU" || return 1
  ip -n "$NA" addr add 198.51.100.1/24 dev bare0 && ip -n "$NB" addr add 198.51.100.2/24 dev bare0 || return 1
  ip -n "$NA" link set bare0 up && ip -n "$NB" link set bare0 up
}

# ---------------------------------------------------------------- certificates and configs
make_pki() {

  (cd "$WORK/pki" &&
    "$CERT_BIN" ca -name "throughput bench CA" -version 1 -duration 24h -out-crt ca.crt -out-key ca.key &&
    "$CERT_BIN" sign -version 1 -ca-crt ca.crt -ca-key ca.key -name bench-a -networks 10.200.0.1/24 -out-crt a.crt -out-key a.key &&
    "$CERT_BIN" sign -version 1 -ca-crt ca.crt -ca-key ca.key -name bench-b -networks 10.200.0.2/24 -out-crt b.crt -out-key b.key)
}

nebula_config() { # side(a|b) peer-overlay peer-underlay
  cat <<EOF
pki:
  ca: $WORK/pki/ca.crt
  cert: $WORK/pki/$1.crt
  key: $WORK/pki/$1.key
static_host_map:
  "$2": ["$3:4242"]
lighthouse:
  am_lighthouse: false
  interval: 60
  hosts: []
listen:
  host: 0.0.0.0
  port: 4242
$( [ -n "$BUFFERS" ] && printf '  read_buffer: %s\n  write_buffer: %s\n' "$BUFFERS" "$BUFFERS" )
punchy:
  punch: false
cipher: $CIPHER
tun:
  disabled: false
  dev: nb0
  mtu: $MTU
logging:
  level: info
  format: text
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
EOF
}

write_configs() {
  nebula_config a 10.200.0.2 192.0.2.2 > "$WORK/a.yml"
  nebula_config b 10.200.0.1 192.0.2.1 > "$WORK/b.yml"
  # ours-2: the same with two data-plane workers
  for s in a b; do { cat "$WORK/$s.yml"; echo "routines: 2"; } > "$WORK/$s-2.yml"; done
}

# ---------------------------------------------------------------- daemons
stop_daemons() {
  local p
  for p in "${DAEMONS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${DAEMONS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  DAEMONS=()
  # TUN devices vanish with their process; remove any leftovers so the next target starts clean.
  local ns dev
  for ns in "$NA" "$NB"; do
    for dev in nb0 "$WGA" "$WGB"; do
      ip -n "$ns" link show "$dev" >/dev/null 2>&1 && ip -n "$ns" link del "$dev" 2>/dev/null
    done
  done
  rm -f "/var/run/wireguard/$WGA.sock" "/var/run/wireguard/$WGB.sock"
}

start_nebula() { # binary logprefix [config-suffix]
  ip netns exec "$NA" "$1" -config "$WORK/a${3:-}.yml" > "$2-a.log" 2>&1 &
  DAEMONS+=($!)
  ip netns exec "$NB" "$1" -config "$WORK/b${3:-}.yml" > "$2-b.log" 2>&1 &
  DAEMONS+=($!)
}

wg_side() { # ns ifname keyfile port peer-pubkey peer-overlay peer-underlay my-overlay logfile
  local ns=$1 ifn=$2
  ip netns exec "$ns" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error "$WG_GO" -f "$ifn" > "$9" 2>&1 &
  DAEMONS+=($!)
  for _ in $(seq 1 50); do [ -S "/var/run/wireguard/$ifn.sock" ] && break; sleep 0.1; done
  [ -S "/var/run/wireguard/$ifn.sock" ] || { echo "no UAPI socket for $ifn" >> "$9"; return 1; }
  ip netns exec "$ns" wg set "$ifn" private-key "$3" listen-port "$4" \
    peer "$5" allowed-ips "$6/32" endpoint "$7:$4" >> "$9" 2>&1 || return 1
  ip -n "$ns" addr add "$8/24" dev "$ifn" && ip -n "$ns" link set "$ifn" mtu "$MTU" up
}

start_wireguard() { # logprefix
  [ -f "$WORK/wg-a.key" ] || (
    umask 077
    wg genkey > "$WORK/wg-a.key" && wg genkey > "$WORK/wg-b.key" &&
      wg pubkey < "$WORK/wg-a.key" > "$WORK/wg-a.pub" && wg pubkey < "$WORK/wg-b.key" > "$WORK/wg-b.pub"
  ) || return 1
  wg_side "$NA" "$WGA" "$WORK/wg-a.key" 51820 "$(cat "$WORK/wg-b.pub")" 10.200.0.2 192.0.2.2 10.200.0.1 "$1-a.log" &&
    wg_side "$NB" "$WGB" "$WORK/wg-b.key" 51820 "$(cat "$WORK/wg-a.pub")" 10.200.0.1 192.0.2.1 10.200.0.2 "$1-b.log"
}

wait_tunnel() { # dst
  for _ in $(seq 1 20); do
    ip netns exec "$NA" ping -c 1 -W 1 "$1" >/dev/null 2>&1 && return 0
    local p
    for p in "${DAEMONS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done
  done
  return 1
}

cpu_ticks() { # total utime+stime of the daemons, in clock ticks
  local total=0 p stat f
  for p in "${DAEMONS[@]}"; do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || { echo -1; return; }
    read -r -a f <<< "${stat##*) }"   # fields from 3 (state) on: utime is field 14, stime 15
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# ---------------------------------------------------------------- measurements
start_server() {
  ip netns exec "$NB" timeout -k 2 $((DURATION + UDP_DURATION + 30)) iperf3 -s -1 -p 5201 > /dev/null 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 50); do
    ip netns exec "$NB" ss -Hltn 'sport = :5201' 2>/dev/null | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}

iperf() { # outfile seconds args... ; a one-shot server per test so a hung test can't wedge the next
  local out=$1 secs=$2; shift 2
  start_server || { echo '{"error":"iperf3 server did not start"}' > "$out"; return 1; }
  ip netns exec "$NA" timeout -k 2 $((secs + 15)) iperf3 -J --connect-timeout 3000 -p 5201 -t "$secs" "$@" > "$out" 2> "${out%.json}.err"
  local rc=$?
  stop_server
  return $rc
}

jget() { # file python-expression over j (the iperf3 JSON); prints "" on any error
  "$PY" - "$1" "$2" <<'PYEOF' 2>/dev/null
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    v = eval(sys.argv[2], {"j": j})
    print("" if v is None else v)
except Exception:
    print("")
PYEOF
}

ping_rtt() { # dst -> avg RTT in ms
  ip netns exec "$NA" ping -c 20 -i 0.05 -q -W 1 "$1" 2>/dev/null |
    awk -F'/' '/^(rtt|round-trip)/ { print $5 }'
}

# Rate search for the highest UDP rate with loss <= MAX_LOSS: doubles from UDP_START until a step
# fails, then bisects. A step whose sender could not reach 90% of the offered rate ends the search
# (the sender, not the path, is the limit: the result is what it got through).
udp_search() { # dst tag -> "goodput_bps loss_pct offered_bps sender_limited steps"
  local dst=$1 tag=$2 rate=$((UDP_START * 1000000)) good_rate=0 bad_rate=0
  local best_good=0 best_loss="" best_off=0 limited=false steps=0 f sent loss pass
  while [ "$steps" -lt "$UDP_STEPS" ]; do
    steps=$((steps + 1))
    f=$WORK/$tag-udp-$steps.json
    iperf "$f" "$UDP_DURATION" -c "$dst" -u -b "$rate" -l $((MTU - 28)) ${UDP_WINDOW:+-w "$UDP_WINDOW"}
    sent=$(jget "$f" 'j["end"]["sum"]["bits_per_second"]')
    loss=$(jget "$f" 'j["end"]["sum"]["lost_percent"]')
    if [ -z "$sent" ] || [ -z "$loss" ]; then
      pass=0
    else
      pass=$(awk -v l="$loss" -v m="$MAX_LOSS" 'BEGIN { print (l <= m) ? 1 : 0 }')
    fi
    if [ "$pass" = 1 ]; then
      good_rate=$rate
      best_good=$(awk -v s="$sent" -v l="$loss" 'BEGIN { printf "%.0f", s * (1 - l / 100) }')
      best_loss=$loss
      best_off=$rate
      if awk -v s="$sent" -v r="$rate" 'BEGIN { exit !(s < 0.9 * r) }'; then limited=true; break; fi
      if [ "$bad_rate" = 0 ]; then rate=$((rate * 2)); else rate=$(((good_rate + bad_rate) / 2)); fi
    else
      bad_rate=$rate
      if [ "$good_rate" = 0 ]; then rate=$((rate / 2)); else rate=$(((good_rate + bad_rate) / 2)); fi
    fi
    # stop bisecting once the bracket is within 10%
    if [ "$good_rate" != 0 ] && [ "$bad_rate" != 0 ] &&
      [ $(((bad_rate - good_rate) * 10)) -le "$bad_rate" ]; then break; fi
    [ "$rate" -ge 1000000 ] || break
  done
  echo "$best_good ${best_loss:-null} $best_off $limited $steps"
}

# One target, one round: bring it up, measure, tear it down; appends one JSON line to RESULTS.
run_target() { # round target
  local round=$1 target=$2 dst lp="$WORK/logs/r$1-$2" err="" ok=true
  local rtt="" tcp1="" tcp1_bytes="" tcp4="" cpu_s="" t0 t1 udp
  case $target in
    veth) dst=198.51.100.2 ;;
    go-*) dst=10.200.0.2; start_nebula "$GO_NEBULA" "$lp" ;;
    ours) dst=10.200.0.2; start_nebula "$OURS" "$lp" ;;
    ours-2) dst=10.200.0.2; start_nebula "$OURS" "$lp" -2 ;;
    ours-before) dst=10.200.0.2; start_nebula "$OURS_BEFORE" "$lp" ;;
    wireguard-go) dst=10.200.0.2; start_wireguard "$lp" || err="wireguard-go setup failed" ;;
  esac
  if [ -z "$err" ] && ! wait_tunnel "$dst"; then err="tunnel to $dst did not come up within 20 s"; fi
  if [ -n "$err" ]; then
    ok=false
    log "  $target: FAILED: $err; daemon log tails:"
    for s in a b; do
      [ -f "$lp-$s.log" ] && tail -n 15 "$lp-$s.log" | sed "s/^/      [$s] /" >&2
    done
  else
    sleep 0.5
    rtt=$(ping_rtt "$dst")
    t0=$(cpu_ticks)
    iperf "$WORK/r$round-$target-tcp1.json" "$DURATION" -c "$dst"
    t1=$(cpu_ticks)
    tcp1=$(jget "$WORK/r$round-$target-tcp1.json" 'j["end"]["sum_received"]["bits_per_second"]')
    tcp1_bytes=$(jget "$WORK/r$round-$target-tcp1.json" 'j["end"]["sum_received"]["bytes"]')
    if [ "${#DAEMONS[@]}" -gt 0 ] && [ "$t0" -ge 0 ] && [ "$t1" -ge 0 ]; then
      cpu_s=$(awk -v a="$t0" -v b="$t1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / h }')
    fi
    iperf "$WORK/r$round-$target-tcp4.json" "$DURATION" -c "$dst" -P 4
    tcp4=$(jget "$WORK/r$round-$target-tcp4.json" 'j["end"]["sum_received"]["bits_per_second"]')
    udp=$(udp_search "$dst" "r$round-$target")
    # a daemon that died mid-run invalidates the round for that target
    local p
    for p in "${DAEMONS[@]}"; do kill -0 "$p" 2>/dev/null || { ok=false; err="a daemon exited during the run"; }; done
  fi
  stop_daemons
  "$PY" - "$round" "$target" "$ok" "$err" "${rtt:-}" "${tcp1:-}" "${tcp1_bytes:-}" "${cpu_s:-}" "${tcp4:-}" ${udp:-} >> "$RESULTS" <<'PYEOF'
import json, sys
a = sys.argv[1:]
num = lambda s: float(s) if s not in ("", "null") else None
r = {"round": int(a[0]), "target": a[1], "ok": a[2] == "true", "error": a[3] or None,
     "rtt_ms": num(a[4]), "tcp1_bps": num(a[5]), "tcp1_bytes": num(a[6]), "cpu_s": num(a[7]),
     "tcp4_bps": num(a[8])}
if len(a) >= 14:
    r.update({"udp_bps": num(a[9]), "udp_loss_pct": num(a[10]), "udp_offered_bps": num(a[11]),
              "udp_sender_limited": a[12] == "true", "udp_steps": int(a[13])})
if r["cpu_s"] is not None and r["tcp1_bytes"]:
    r["cpu_s_per_gb"] = r["cpu_s"] / (r["tcp1_bytes"] / 1e9)
print(json.dumps(r))
PYEOF
  tail -n 1 "$RESULTS" | "$PY" -c '
import json, sys
r = json.load(sys.stdin)
f = lambda k, d=1e6, u="Mbit/s": "-" if r.get(k) is None else "%.0f %s" % (r[k] / d, u)
g = lambda k, fmt: "-" if r.get(k) is None else fmt % r[k]
print("  %-13s tcp1 %s, tcp4 %s, udp %s (loss %s%%), rtt %s ms, cpu %s s/GB" % (
    r["target"], f("tcp1_bps"), f("tcp4_bps"), f("udp_bps"), g("udp_loss_pct", "%.2f"),
    r.get("rtt_ms"), "-" if r.get("cpu_s_per_gb") is None else "%.2f" % r["cpu_s_per_gb"]))' >&2
}

# ---------------------------------------------------------------- main
IFS=',' read -r -a WANT <<< "$TARGETS"
RUN=()
for t in "${WANT[@]}"; do
  case $t in
    veth) RUN+=("$t") ;;
    go-1.11.0|go)
      if [ -x "$GO_NEBULA" ]; then RUN+=("go-1.11.0")
      else log "skipping go-1.11.0: no Go nebula at $GO_NEBULA (run .ci/install-go-nebula.sh)"; fi ;;
    ours|ours-2)
      if [ -x "$OURS" ]; then RUN+=("$t")
      else log "skipping ours: no binary at $OURS (cargo build --release -p nebula-node -p nebula-cert)"; fi ;;
    ours-before)
      if [ -n "$OURS_BEFORE" ] && [ -x "$OURS_BEFORE" ]; then RUN+=("$t")
      else log "skipping ours-before: give its binary with --ours-before PATH"; fi ;;
    wireguard-go|wg)
      if [ -x "$WG_GO" ] && command -v wg >/dev/null 2>&1; then RUN+=("wireguard-go")
      else log "skipping wireguard-go: need $WG_GO and wg (run benches/netns/install-wireguard-go.sh)"; fi ;;
    *) echo "throughput: unknown target $t" >&2; exit 2 ;;
  esac
done
[ ${#RUN[@]} -gt 0 ] || { echo "throughput: nothing to run" >&2; exit 1; }

setup_namespaces || { echo "throughput: could not create the namespaces" >&2; exit 1; }
make_pki > "$WORK/logs/pki.log" 2>&1 || { cat "$WORK/logs/pki.log" >&2; echo "throughput: certificates failed" >&2; exit 1; }
write_configs
for b in "$GO_NEBULA" "$OURS"; do
  if [ -x "$b" ] && ! "$b" -test -config "$WORK/a.yml" > "$WORK/logs/test-config.log" 2>&1; then
    log "warning: $b -test rejects the config:"; sed 's/^/      /' "$WORK/logs/test-config.log" >&2
  fi
done

version_of() { "$@" 2>&1 | awk 'NF { print; exit }'; }
META=$WORK/meta.json
"$PY" - > "$META" <<PYEOF
import json, os
print(json.dumps({
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "kernel": "$(uname -r)", "cpus": os.cpu_count(),
  "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
  "rounds": $ROUNDS, "targets": "${RUN[*]}".split(), "mtu": $MTU, "cipher": "$CIPHER",
  "wireguard_cipher": "chacha20poly1305", "tcp_seconds": $DURATION, "udp_step_seconds": $UDP_DURATION,
  "udp_max_loss_pct": $MAX_LOSS, "udp_payload_bytes": $((MTU - 28)), "udp_iperf3_window": "${UDP_WINDOW:-default}",
  "listen_buffers": "${BUFFERS:-default}",
  "versions": {"go": "$( [ -x "$GO_NEBULA" ] && version_of "$GO_NEBULA" -version)",
               "ours": "$( [ -x "$OURS" ] && version_of "$OURS" -version)",
               "ours_binary_mtime": "$( [ -x "$OURS" ] && date -u -r "$OURS" +%Y-%m-%dT%H:%M:%SZ)",
               "ours_before": "${OURS_BEFORE}",
               "wireguard_go": "$( [ -x "$WG_GO" ] && version_of "$WG_GO" --version)",
               "iperf3": "$(version_of iperf3 --version)"},
  "cert_tool": "$CERT_BIN",
}))
PYEOF

log "namespaces $NA <-> $NB; MTU $MTU, cipher $CIPHER, $ROUNDS round(s) of: ${RUN[*]}"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS"
  for t in "${RUN[@]}"; do run_target "$round" "$t"; done
done
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" "$HERE/report.py" "$META" "$RESULTS" ${OUT:+"$OUT"}
