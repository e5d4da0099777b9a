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
# binaries installed above). Built first, so the Debian packages can be made from the same debug
# binaries (the Ansible test installs the node package) without a second build.
cargo test --workspace --locked --all-features --no-run
bash scripts/package.sh --profile dev --no-build
cargo test --workspace --locked --no-fail-fast --all-features 2>&1 | tee -a target/test-output.log
# The package test: Debian's nebula 1.6.1 upgraded to our package, the tunnel back, lintian clean.
bash scripts/test-package.sh 2>&1 | tee -a target/test-output.log
