#!/usr/bin/env bash
# The whole test suite: installs what it needs (root, Debian 12), then format, lint and every test
# (unit, simulation, namespace end-to-end, and interop against Debian's Go Nebula builds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.log
