#!/usr/bin/env bash
# Lighthouse load benchmark: our nebula and Go Nebula 1.11.0 as lighthouses on loopback, grown to
# 1k..100k live tunnels by simulated hosts (benches/lhload), in the same run; prints the ratios.
# Usage: bash benches/lighthouse-load.sh [lhload options, e.g. --sizes 1000,5000 --targets ours]
# Writes benches/results/<date>-lighthouse-load.{txt,json} unless --out is given.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
go_nebula=${GO_NEBULA:-/opt/go-nebula/1.11.0/usr/bin/nebula}

cargo build --release -p nebula-node
cargo build --release -p lhload
if [ ! -x "$go_nebula" ]; then
  if [ "$(id -u)" = 0 ]; then
    bash .ci/install-go-nebula.sh
  else
    echo "Go Nebula 1.11.0 missing at $go_nebula: run 'sudo bash .ci/install-go-nebula.sh'" >&2
  fi
fi

out=()
case " $* " in
  *" --out "*) ;;
  *) mkdir -p benches/results; out=(--out "benches/results/$(date -u +%F)-lighthouse-load") ;;
esac
exec "$target_dir/release/lhload" --ours "$target_dir/release/nebula" --go "$go_nebula" "${out[@]}" "$@"
