#!/usr/bin/env bash
# Makes the golden certificate files in go-1.6.1/ and go-1.11.0/ with Debian's Go nebula-cert binaries.
#
# Run ONCE by hand; the outputs are checked in and are fixed golden bytes (keys are random, so a
# re-run makes different files and every test expectation is derived from the files themselves).
# Never run this in CI. See README.md next to this script for how and when the files were made.
#
#   nebula-cert/tests/data/make-golden.sh [--force]
#
# Binaries (installed by .ci/install-go-nebula.sh):
#   GO16  = /usr/bin/nebula-cert                        (Debian nebula 1.6.1)
#   GO111 = /opt/go-nebula/1.11.0/usr/bin/nebula-cert   (Debian nebula 1.11.0)
#
# Files written per certificate X.crt (in the directory of the tool that made it):
#   X.print-<ver>.json   `nebula-cert print -json -path X.crt` of tool <ver> (1.6.1: one object per line,
#                        1.11.0: one JSON array); made with every tool version that can parse X.crt
#   X.print-<ver>.txt    the same without -json
#   X.fingerprint        the hex fingerprint from the making tool's print -json (one line)
#   X.verify-<ver>-<ca>.txt  `nebula-cert verify -ca <ca> -crt X.crt`: first line "exit=<status>", then
#                        stdout and stderr
# and manifest.txt: one line per certificate:
#   <cert file> <ca file or -> <private key file or -> <public key file or -> <cert version> <curve>
set -euo pipefail

GO16=/usr/bin/nebula-cert
GO111=/opt/go-nebula/1.11.0/usr/bin/nebula-cert
for b in "$GO16" "$GO111"; do
    [ -x "$b" ] || { echo "missing $b: run .ci/install-go-nebula.sh" >&2; exit 1; }
done
"$GO16" -version | grep -q 'Version: 1.6.1' || { echo "$GO16 is not 1.6.1" >&2; exit 1; }
"$GO111" -version | grep -q 'Version: 1.11.0' || { echo "$GO111 is not 1.11.0" >&2; exit 1; }

HERE="$(cd "$(dirname "$0")" && pwd)"
D16="$HERE/go-1.6.1"
D111="$HERE/go-1.11.0"
if [ -e "$D16" ] || [ -e "$D111" ]; then
    if [ "${1:-}" != "--force" ]; then
        echo "golden directories exist; they are fixed golden bytes. Pass --force to replace them." >&2
        exit 1
    fi
    rm -rf "$D16" "$D111"
fi
mkdir -p "$D16" "$D111"

# Passphrase for the encrypted CA keys (tests use the same literal).
export GOLDEN_PASSPHRASE="golden passphrase"
# CAs: 100 years. Hosts: 99 years. Go's time.Duration tops out at ~292 years.
CA_DUR=876000h
HOST_DUR=867240h
# Small Argon2 cost so tests that decrypt the key stay fast (KiB).
ARGON="-argon-memory 1024 -argon-iterations 2 -argon-parallelism 2"

# record_verify <tool-ver> <tool> <dir> <ca> <crt>
record_verify() {
    local ver=$1 tool=$2 dir=$3 ca=$4 crt=$5 out rc
    out="$dir/${crt%.crt}.verify-$ver-${ca%.crt}.txt"
    set +e
    (cd "$dir" && "$tool" verify -ca "$ca" -crt "$crt") >"$out.stdout" 2>"$out.stderr"
    rc=$?
    set -e
    { echo "exit=$rc"; cat "$out.stdout" "$out.stderr"; } >"$out"
    rm -f "$out.stdout" "$out.stderr"
}

# record_print <tool-ver> <tool> <dir> <crt>
record_print() {
    local ver=$1 tool=$2 dir=$3 crt=$4
    (cd "$dir" && "$tool" print -json -path "$crt") >"$dir/${crt%.crt}.print-$ver.json"
    (cd "$dir" && "$tool" print -path "$crt") >"$dir/${crt%.crt}.print-$ver.txt"
}

# manifest <dir> <crt> <ca|-> <key|-> <pub|-> <version> <curve>
manifest() {
    local dir=$1
    shift
    echo "$*" >>"$dir/manifest.txt"
}

############################################################################ 1.6.1 (v1, Curve25519)
cd "$D16"
"$GO16" ca -name "Golden CA 1.6.1" -duration $CA_DUR -groups laptop,home,servers,ops \
    -ips 10.42.0.0/16,192.168.100.0/24 -subnets 10.200.0.0/16,172.16.0.0/12 \
    -out-crt ca.crt -out-key ca.key
"$GO16" sign -name host1 -ip 10.42.1.5/16 -groups laptop,home -subnets 10.200.1.0/24,172.16.5.0/24 \
    -duration $HOST_DUR -out-crt host1.crt -out-key host1.key
# A host with no groups and no subnets, default duration (CA expiry - 1s), in the second CA network.
"$GO16" sign -name host-min -ip 192.168.100.7/24 -out-crt host-min.crt -out-key host-min.key
# keygen + sign -in-pub.
"$GO16" keygen -out-key host2.key -out-pub host2.pub
"$GO16" sign -name host2.example.com -ip 10.42.2.9/16 -groups servers -in-pub host2.pub \
    -duration $HOST_DUR -out-crt host2.crt
# A second, unconstrained CA and a host under it (negative verify checks, bundles).
"$GO16" ca -name "Other CA 1.6.1" -duration $CA_DUR -out-crt other-ca.crt -out-key other-ca.key
"$GO16" sign -name other-host -ip 10.99.0.1/8 -ca-crt other-ca.crt -ca-key other-ca.key \
    -duration $HOST_DUR -out-crt other-host.crt -out-key other-host.key
cat ca.crt other-ca.crt >bundle.crt

manifest "$D16" ca.crt - ca.key - 1 CURVE25519
manifest "$D16" other-ca.crt - other-ca.key - 1 CURVE25519
manifest "$D16" host1.crt ca.crt host1.key - 1 CURVE25519
manifest "$D16" host-min.crt ca.crt host-min.key - 1 CURVE25519
manifest "$D16" host2.crt ca.crt host2.key host2.pub 1 CURVE25519
manifest "$D16" other-host.crt other-ca.crt other-host.key - 1 CURVE25519

for c in ca other-ca host1 host-min host2 other-host bundle; do
    record_print 1.6.1 "$GO16" "$D16" $c.crt
    record_print 1.11.0 "$GO111" "$D16" $c.crt
done
for c in ca other-ca host1 host-min host2 other-host; do
    jq -r .fingerprint "$D16/$c.print-1.6.1.json" >"$D16/$c.fingerprint"
done
for c in host1 host-min host2 other-host; do
    for ca in ca.crt other-ca.crt bundle.crt; do
        record_verify 1.6.1 "$GO16" "$D16" $ca $c.crt
        record_verify 1.11.0 "$GO111" "$D16" $ca $c.crt
    done
done

############################################################################ 1.11.0 (v1 and v2, both curves)
cd "$D111"
"$GO111" ca -version 1 -curve 25519 -name "Golden CA v1 25519" -duration $CA_DUR \
    -groups laptop,home,servers -networks 10.50.0.0/16 -unsafe-networks 10.250.0.0/16 \
    -out-crt ca-v1-25519.crt -out-key ca-v1-25519.key
"$GO111" ca -version 1 -curve P256 -name "Golden CA v1 P256" -duration $CA_DUR \
    -groups laptop,servers -networks 10.51.0.0/16 \
    -out-crt ca-v1-p256.crt -out-key ca-v1-p256.key
"$GO111" ca -version 2 -curve 25519 -name "Golden CA v2 25519" -duration $CA_DUR \
    -groups laptop,home,servers -networks 10.60.0.0/16,10.61.0.0/16,fd00:60::/32 \
    -unsafe-networks 10.251.0.0/16,fd00:251::/32 \
    -out-crt ca-v2-25519.crt -out-key ca-v2-25519.key
"$GO111" ca -version 2 -curve P256 -name "Golden CA v2 P256" -duration $CA_DUR \
    -groups servers,db -networks 10.62.0.0/16,fd00:62::/32 -unsafe-networks 10.252.0.0/16 \
    -out-crt ca-v2-p256.crt -out-key ca-v2-p256.key
# Encrypted CA keys (NEBULA_CA_PASSPHRASE, cheap Argon2 parameters).
NEBULA_CA_PASSPHRASE="$GOLDEN_PASSPHRASE" "$GO111" ca -version 2 -curve 25519 -name "Golden CA v2 25519 encrypted" \
    -duration $CA_DUR -encrypt $ARGON -out-crt ca-v2-25519-enc.crt -out-key ca-v2-25519-enc.key
NEBULA_CA_PASSPHRASE="$GOLDEN_PASSPHRASE" "$GO111" ca -version 1 -curve P256 -name "Golden CA v1 P256 encrypted" \
    -duration $CA_DUR -encrypt $ARGON -out-crt ca-v1-p256-enc.crt -out-key ca-v1-p256-enc.key
# Unconstrained other CAs for negative checks.
"$GO111" ca -version 1 -name "Other CA v1" -duration $CA_DUR -out-crt other-ca-v1.crt -out-key other-ca-v1.key
"$GO111" ca -version 2 -name "Other CA v2" -duration $CA_DUR -out-crt other-ca-v2.crt -out-key other-ca-v2.key

# Hosts.
"$GO111" sign -ca-crt ca-v1-25519.crt -ca-key ca-v1-25519.key -name host-v1-25519 \
    -networks 10.50.1.5/16 -unsafe-networks 10.250.1.0/24,10.250.2.0/24 -groups laptop,home \
    -duration $HOST_DUR -out-crt host-v1-25519.crt -out-key host-v1-25519.key
"$GO111" sign -ca-crt ca-v1-p256.crt -ca-key ca-v1-p256.key -name host-v1-p256 \
    -networks 10.51.3.4/16 -groups servers \
    -duration $HOST_DUR -out-crt host-v1-p256.crt -out-key host-v1-p256.key
"$GO111" sign -ca-crt ca-v2-25519.crt -ca-key ca-v2-25519.key -name host-v2-25519 \
    -networks 10.60.1.5/16,10.61.7.1/24,fd00:60::5/64 -unsafe-networks 10.251.1.0/24,fd00:251:1::/48 \
    -groups laptop,home,servers -duration $HOST_DUR -out-crt host-v2-25519.crt -out-key host-v2-25519.key
"$GO111" sign -ca-crt ca-v2-p256.crt -ca-key ca-v2-p256.key -name host-v2-p256 \
    -networks fd00:62::99/64,10.62.9.9/16 -unsafe-networks 10.252.3.0/24 -groups db \
    -duration $HOST_DUR -out-crt host-v2-p256.crt -out-key host-v2-p256.key
# IPv6-only v2 host, no groups, default duration.
"$GO111" sign -ca-crt ca-v2-25519.crt -ca-key ca-v2-25519.key -name host-v2-v6only \
    -networks fd00:60::1:2/96 -out-crt host-v2-v6only.crt -out-key host-v2-v6only.key
# keygen (both curves) and -in-pub signing.
"$GO111" keygen -curve 25519 -out-key keygen-25519.key -out-pub keygen-25519.pub
"$GO111" keygen -curve P256 -out-key keygen-p256.key -out-pub keygen-p256.pub
"$GO111" sign -ca-crt ca-v2-p256.crt -ca-key ca-v2-p256.key -name host-v2-p256-inpub \
    -networks 10.62.0.77/16 -in-pub keygen-p256.pub -duration $HOST_DUR -out-crt host-v2-p256-inpub.crt
"$GO111" sign -ca-crt ca-v1-25519.crt -ca-key ca-v1-25519.key -name host-v1-25519-inpub \
    -networks 10.50.0.77/16 -in-pub keygen-25519.pub -duration $HOST_DUR -out-crt host-v1-25519-inpub.crt
# A v1 host signed by a v2 CA (sign -version 1).
"$GO111" sign -ca-crt ca-v2-25519.crt -ca-key ca-v2-25519.key -version 1 -name host-v1-from-v2ca \
    -networks 10.60.2.2/16 -groups home -duration $HOST_DUR \
    -out-crt host-v1-from-v2ca.crt -out-key host-v1-from-v2ca.key
# Hosts signed with the encrypted CA keys.
NEBULA_CA_PASSPHRASE="$GOLDEN_PASSPHRASE" "$GO111" sign -ca-crt ca-v2-25519-enc.crt -ca-key ca-v2-25519-enc.key \
    -name host-v2-enc -networks 10.70.0.1/16 -duration $HOST_DUR -out-crt host-v2-enc.crt -out-key host-v2-enc.key
NEBULA_CA_PASSPHRASE="$GOLDEN_PASSPHRASE" "$GO111" sign -ca-crt ca-v1-p256-enc.crt -ca-key ca-v1-p256-enc.key \
    -name host-v1-p256-enc -networks 10.71.0.1/16 -duration $HOST_DUR -out-crt host-v1-p256-enc.crt -out-key host-v1-p256-enc.key
# Hosts under the other CAs.
"$GO111" sign -ca-crt other-ca-v1.crt -ca-key other-ca-v1.key -name other-host-v1 -networks 10.50.1.5/16 \
    -duration $HOST_DUR -out-crt other-host-v1.crt -out-key other-host-v1.key
"$GO111" sign -ca-crt other-ca-v2.crt -ca-key other-ca-v2.key -name other-host-v2 -networks 10.60.1.5/16 \
    -duration $HOST_DUR -out-crt other-host-v2.crt -out-key other-host-v2.key
# Bundles: all v1 CAs, all v2 CAs, and everything mixed in one file.
cat ca-v1-25519.crt ca-v1-p256.crt ca-v1-p256-enc.crt other-ca-v1.crt >bundle-v1.crt
cat ca-v2-25519.crt ca-v2-p256.crt ca-v2-25519-enc.crt other-ca-v2.crt >bundle-v2.crt
cat bundle-v2.crt bundle-v1.crt >bundle-mixed.crt
# A cert file holding one v1 and one v2 cert (pki.cert style, 1.10+).
cat host-v1-from-v2ca.crt host-v2-25519.crt >host-v1-and-v2.crt

manifest "$D111" ca-v1-25519.crt - ca-v1-25519.key - 1 CURVE25519
manifest "$D111" ca-v1-p256.crt - ca-v1-p256.key - 1 P256
manifest "$D111" ca-v2-25519.crt - ca-v2-25519.key - 2 CURVE25519
manifest "$D111" ca-v2-p256.crt - ca-v2-p256.key - 2 P256
manifest "$D111" ca-v2-25519-enc.crt - ca-v2-25519-enc.key - 2 CURVE25519
manifest "$D111" ca-v1-p256-enc.crt - ca-v1-p256-enc.key - 1 P256
manifest "$D111" other-ca-v1.crt - other-ca-v1.key - 1 CURVE25519
manifest "$D111" other-ca-v2.crt - other-ca-v2.key - 2 CURVE25519
manifest "$D111" host-v1-25519.crt ca-v1-25519.crt host-v1-25519.key - 1 CURVE25519
manifest "$D111" host-v1-p256.crt ca-v1-p256.crt host-v1-p256.key - 1 P256
manifest "$D111" host-v2-25519.crt ca-v2-25519.crt host-v2-25519.key - 2 CURVE25519
manifest "$D111" host-v2-p256.crt ca-v2-p256.crt host-v2-p256.key - 2 P256
manifest "$D111" host-v2-v6only.crt ca-v2-25519.crt host-v2-v6only.key - 2 CURVE25519
manifest "$D111" host-v2-p256-inpub.crt ca-v2-p256.crt keygen-p256.key keygen-p256.pub 2 P256
manifest "$D111" host-v1-25519-inpub.crt ca-v1-25519.crt keygen-25519.key keygen-25519.pub 1 CURVE25519
manifest "$D111" host-v1-from-v2ca.crt ca-v2-25519.crt host-v1-from-v2ca.key - 1 CURVE25519
manifest "$D111" host-v2-enc.crt ca-v2-25519-enc.crt host-v2-enc.key - 2 CURVE25519
manifest "$D111" host-v1-p256-enc.crt ca-v1-p256-enc.crt host-v1-p256-enc.key - 1 P256
manifest "$D111" other-host-v1.crt other-ca-v1.crt other-host-v1.key - 1 CURVE25519
manifest "$D111" other-host-v2.crt other-ca-v2.crt other-host-v2.key - 2 CURVE25519

CERTS111="ca-v1-25519 ca-v1-p256 ca-v2-25519 ca-v2-p256 ca-v2-25519-enc ca-v1-p256-enc other-ca-v1 other-ca-v2
    host-v1-25519 host-v1-p256 host-v2-25519 host-v2-p256 host-v2-v6only host-v2-p256-inpub host-v1-25519-inpub
    host-v1-from-v2ca host-v2-enc host-v1-p256-enc other-host-v1 other-host-v2"
for c in $CERTS111 bundle-v1 bundle-v2 bundle-mixed host-v1-and-v2; do
    record_print 1.11.0 "$GO111" "$D111" $c.crt
done
for c in $CERTS111; do
    jq -r '.[0].fingerprint' "$D111/$c.print-1.11.0.json" >"$D111/$c.fingerprint"
done
# 1.6.1 can print the v1 Curve25519 certs made by 1.11.0 (it knows neither v2 nor the curve field).
for c in ca-v1-25519 other-ca-v1 host-v1-25519 host-v1-25519-inpub other-host-v1; do
    record_print 1.6.1 "$GO16" "$D111" $c.crt
done
for c in host-v1-25519 host-v1-p256 host-v2-25519 host-v2-p256 host-v2-v6only host-v2-p256-inpub \
    host-v1-25519-inpub host-v1-from-v2ca host-v2-enc host-v1-p256-enc other-host-v1 other-host-v2 host-v1-and-v2; do
    ca=$(awk -v c="$c.crt" '$1 == c { print $2 }' "$D111/manifest.txt")
    [ -n "$ca" ] && record_verify 1.11.0 "$GO111" "$D111" "$ca" $c.crt
    record_verify 1.11.0 "$GO111" "$D111" bundle-mixed.crt $c.crt
    record_verify 1.11.0 "$GO111" "$D111" other-ca-v1.crt $c.crt
    record_verify 1.11.0 "$GO111" "$D111" other-ca-v2.crt $c.crt
done
for c in host-v1-25519 host-v1-25519-inpub other-host-v1; do
    ca=$(awk -v c="$c.crt" '$1 == c { print $2 }' "$D111/manifest.txt")
    record_verify 1.6.1 "$GO16" "$D111" "$ca" $c.crt
    record_verify 1.6.1 "$GO16" "$D111" bundle-v1.crt $c.crt
done

{
    echo "made=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "go16=$("$GO16" -version | head -1)"
    echo "go111=$("$GO111" -version | head -1)"
    echo "go111_pkg=nebula $(cat /opt/go-nebula/1.11.0/DEBIAN_VERSION 2>/dev/null || echo unknown) (Debian sid, unpacked)"
    echo "go16_pkg=$(dpkg-query -W -f='${Package} ${Version}' nebula 2>/dev/null || echo unknown)"
    echo "go111_sha256=$(sha256sum "$GO111" | cut -d' ' -f1)"
    echo "go16_sha256=$(sha256sum "$GO16" | cut -d' ' -f1)"
} >"$HERE/golden-info.txt"
echo "golden files written to $D16 and $D111"
