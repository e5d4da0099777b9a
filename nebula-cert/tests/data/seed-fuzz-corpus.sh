#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/<target>/, git-ignored) from the golden Go files in this directory.
# Run before fuzzing, e.g.:
#   nebula-cert/tests/data/seed-fuzz-corpus.sh && cd fuzz && \
#     RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=/work/main/fuzz/target cargo fuzz run cert_v2 -- -max_total_time=180
# pem:           every golden .crt/.key/.pub file as is (PEM text)
# cert_v1/v2:    the raw (base64-decoded) body of every "NEBULA CERTIFICATE" / "... V2" block
# encrypted_key: the encrypted CA keys (PEM text); their passphrase is the one the fuzz target uses
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CORPUS="${1:-$HERE/../../../fuzz/corpus}"
mkdir -p "$CORPUS/pem" "$CORPUS/cert_v1" "$CORPUS/cert_v2" "$CORPUS/encrypted_key"

for f in "$HERE"/go-*/*.crt "$HERE"/go-*/*.key "$HERE"/go-*/*.pub; do
    tag="$(basename "$(dirname "$f")")-$(basename "$f")"
    cp "$f" "$CORPUS/pem/$tag"
    case "$f" in *-enc.key) cp "$f" "$CORPUS/encrypted_key/$tag" ;; esac
done

# Split each .crt into its PEM blocks and write the decoded body of each by version.
for f in "$HERE"/go-*/*.crt; do
    tag="$(basename "$(dirname "$f")")-$(basename "$f" .crt)"
    awk -v out="$CORPUS" -v tag="$tag" '
        /^-----BEGIN NEBULA CERTIFICATE V2-----$/ { n++; file = out "/cert_v2/" tag "-" n ".b64"; next }
        /^-----BEGIN NEBULA CERTIFICATE-----$/    { n++; file = out "/cert_v1/" tag "-" n ".b64"; next }
        /^-----END/                               { file = ""; next }
        file != ""                                { print > file }
    ' "$f"
done
for b in "$CORPUS"/cert_v1/*.b64 "$CORPUS"/cert_v2/*.b64; do
    base64 -d "$b" >"${b%.b64}.bin"
    rm -f "$b"
done
echo "seeded $(find "$CORPUS" -type f | wc -l) files under $CORPUS"
