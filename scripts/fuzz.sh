#!/usr/bin/env bash
# A fuzz campaign: run every cargo-fuzz target (or the named ones) for MINUTES each, growing the
# corpus in fuzz/corpus/<target>/ (seeded from what is there), and print per target the executions,
# the final coverage (libFuzzer's cov:/ft:), the corpus size and the crashes found. Exits non-zero
# if any target crashed; the artifact paths (fuzz/artifacts/<target>/...) are in the output.
#
# usage: scripts/fuzz.sh [-j | --jobs=N] MINUTES [TARGET...]
#   -j        run nproc/2 targets at once (default: one target at a time)
#   --jobs=N  run N targets at once
# Installs cargo-fuzz when it is missing. Uses nightly if rustup has it, else RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

usage() {
    sed -n '7,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

jobs=1
case "${1:-}" in
-j)
    jobs=$(($(nproc) / 2))
    shift
    ;;
--jobs=*)
    jobs=${1#--jobs=}
    shift
    ;;
esac
[[ $jobs =~ ^[0-9]+$ ]] && ((jobs >= 1)) || jobs=1
minutes=${1:-}
[[ $minutes =~ ^[0-9]+$ ]] && ((minutes >= 1)) || usage
shift

if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
if ! "${fuzz[@]}" --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: installing it (cargo install cargo-fuzz)"
    cargo install --locked cargo-fuzz
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi
known=$("${fuzz[@]}" list)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$known" || {
        echo "fuzz.sh: no such target: $t (have: $(tr '\n' ' ' <<<"$known"))" >&2
        exit 2
    }
done

# Release build with debug assertions (integer overflow is a finding too); the runs reuse it.
flags=(-O --debug-assertions)
echo "fuzz.sh: building ${#targets[@]} target(s)"
if (($# > 0)); then
    for t in "${targets[@]}"; do "${fuzz[@]}" build "${flags[@]}" "$t"; done
else
    "${fuzz[@]}" build "${flags[@]}"
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/nebula-fuzz.XXXXXX")
echo "fuzz.sh: ${minutes} min per target, ${jobs} at a time, logs in $logs"

# One target: run it, then write its summary line to $logs/<target>.summary.
run_one() {
    local t=$1 log=$logs/$1.log
    mkdir -p "corpus/$t" "artifacts/$t"
    local rc=0 timer=()
    # CPU seconds the fuzzer got (user + system): on a shared machine it is less than the wall time.
    [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f '%U %S' -o "$logs/$t.time")
    "${timer[@]}" "${fuzz[@]}" run "${flags[@]}" "$t" "corpus/$t" -- \
        -max_total_time=$((minutes * 60)) -print_final_stats=1 -timeout=10 \
        >"$log" 2>&1 || rc=$?
    local execs cov ft files size crashes artifacts cpu=?
    [[ -s $logs/$t.time ]] && cpu=$(awk 'END { printf "%d", $1 + $2 }' "$logs/$t.time")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]*' | tail -1 | cut -d' ' -f2)
    ft=$(grep -E '^#[0-9]+' "$log" | grep -o 'ft: [0-9]*' | tail -1 | cut -d' ' -f2)
    files=$(find "corpus/$t" -type f | wc -l)
    size=$(du -sh --apparent-size "corpus/$t" | cut -f1)
    artifacts=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tr '\n' ' ')
    crashes=$(wc -w <<<"$artifacts")
    if ((rc != 0 && crashes == 0)); then
        # Died without an artifact (build failure, out of memory before a unit was written...).
        crashes=1
        artifacts="(none written; exit $rc, see $log)"
    fi
    printf '%-26s execs %-10s cov %-6s ft %-7s cpu %5ss corpus %5s files %6s  crashes %s %s\n' \
        "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$cpu" "$files" "$size" "$crashes" "$artifacts" \
        >"$logs/$t.summary"
    cat "$logs/$t.summary"
}

running=0
for t in "${targets[@]}"; do
    if ((jobs == 1)); then
        run_one "$t"
    else
        run_one "$t" &
        running=$((running + 1))
        if ((running >= jobs)); then
            wait -n || true
            running=$((running - 1))
        fi
    fi
done
wait

echo
echo "fuzz.sh: summary (${minutes} min per target)"
failed=0
for t in "${targets[@]}"; do
    cat "$logs/$t.summary"
    if ! grep -q ' crashes 0 ' "$logs/$t.summary"; then
        failed=1
    fi
done
if ((failed)); then
    echo "fuzz.sh: CRASHES found: reproduce with 'cargo +nightly fuzz run <target> <artifact>'"
    exit 1
fi
echo "fuzz.sh: no crashes"
