#!/usr/bin/env bash
# Chaos soak of the simulation kit (nebula-lighthouse/tests/soak.rs), in release:
#   scripts/soak.sh [SEEDS] [SECONDS] [FIRST_SEED]
# runs SEEDS seeds (default 3) of SECONDS simulated seconds each (default 100000), starting at
# FIRST_SEED (default 1). A failure names the seed and the simulated second.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SEEDS="${1:-3}"
export SOAK_SECONDS="${2:-100000}"
export SOAK_FIRST_SEED="${3:-1}"
exec cargo test --release -p nebula-lighthouse --test soak -- --ignored --nocapture soak_long
