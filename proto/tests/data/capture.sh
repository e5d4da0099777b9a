#!/bin/sh
# Captures the first handshake datagrams a real Go Nebula node sends, for tests/go_golden.rs.
# Usage: capture.sh <nebula binary> <out prefix> [workdir]
# A node with a throw-away v1 CA (made by Debian's nebula-cert 1.6.1) is started with tun disabled,
# listening on 127.0.0.1, with a lighthouse whose static_host_map entry points at a loopback UDP
# socket held by python3. At start-up the node sends a HostUpdateNotification to the lighthouse,
# which makes it initiate a handshake; the socket records the first two stage-1 datagrams (the
# original and the first retry) and the node is stopped. Nothing leaves loopback.
set -eu
NEBULA=$1
OUT=$2
WORK=${3:-$(mktemp -d)}
cd "$WORK"
[ -f ca.crt ] || nebula-cert ca -name "proto test ca" -duration 87600h -out-crt ca.crt -out-key ca.key
[ -f a.crt ] || nebula-cert sign -ca-crt ca.crt -ca-key ca.key -name node-a -ip 10.42.0.2/24 \
    -groups g1 -out-crt a.crt -out-key a.key
# The node's certificate as raw protobuf (PEM body), to compare with the one in the handshake.
sed '/-----/d' a.crt | base64 -d > "$OUT-node-cert.bin"
python3 - "$NEBULA" "$OUT" <<'PY'
import os, signal, socket, subprocess, sys, time
nebula, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
open("a.yml", "w").write(f"""
pki: {{ca: ca.crt, cert: a.crt, key: a.key}}
static_host_map: {{"10.42.0.1": ["127.0.0.1:{port}"]}}
lighthouse: {{am_lighthouse: false, hosts: ["10.42.0.1"], interval: 60}}
listen: {{host: 127.0.0.1, port: 0}}
tun: {{disabled: true, dev: nebula-cap}}
logging: {{level: debug}}
firewall: {{outbound: [{{port: any, proto: any, host: any}}], inbound: []}}
""")
p = subprocess.Popen([nebula, "-config", "a.yml"], stdout=open("a.log", "w"), stderr=subprocess.STDOUT)
try:
    s.settimeout(20)
    for i in (1, 2):
        data, _ = s.recvfrom(65535)
        open(f"{out}-{i}.bin", "wb").write(data)
        print(f"{out}-{i}.bin: {len(data)} bytes")
finally:
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
PY
