#!/usr/bin/env bash
# The whole test suite: installs what it needs (root, Debian 12), then format, lint and every tier:
# unit and simulation tests (plain `cargo test`), then the namespace end-to-end tests (root, the
# `netns` feature) and the interop tests against Debian's Go Nebula builds (the `interop` feature).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
# Module import cycles inside each crate (test-only edges aside): there must be none.
bash scripts/import-cycles.sh
# With every feature, so the gated system tests are linted too.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
mkdir -p target
# Tiers 1 and 2: what a plain user gets from `cargo test --workspace` (no root, no Go binaries).
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.log
# Tier 3 and interop: every test again with the gated files turned on (needs root and the Go
# binaries installed above).
cargo test --workspace --locked --no-fail-fast --all-features 2>&1 | tee -a target/test-output.log
