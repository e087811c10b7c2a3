#!/usr/bin/env bash
# Fuzzing smoke run: installs cargo-fuzz if missing, builds every target in
# fuzz/ (nightly, AddressSanitizer, debug assertions), then runs each one
# for FUZZ_SECONDS (default 60) on its committed seeds (fuzz/seeds/<target>),
# its saved findings (fuzz/regressions/<target>) and the corpus earlier runs
# grew (fuzz/corpus/<target>, git-ignored).
# Prints the executions and seconds of every step; exits non-zero when any
# target crashes, times out or runs out of memory (the input is left in
# fuzz/artifacts/<target>/, and the end of the log is printed).
#
# Usage, from anywhere:  bash .ci/fuzz.sh [TARGET...]
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh dnssec_records
#   FUZZ_NICE=19 bash .ci/fuzz.sh          # on a shared machine
# The build uses fuzz/target (cargo-fuzz's default), apart from the main
# crate's target/. The targets run one after another, never in parallel.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_NICE="${FUZZ_NICE:-0}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
ALL_TARGETS=(client_query upstream_answer dnssec_records config_loader padding_traces)
if (($# > 0)); then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi
unset CARGO_TARGET_DIR # fuzz/target, never the main build's

step() { printf '\n==> %s\n' "$*"; }
took() { printf '    %s: %d s\n' "$1" $((SECONDS - $2)); }
total_start=$SECONDS

step "cargo-fuzz"
start=$SECONDS
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
cargo fuzz --version
cargo "+$TOOLCHAIN" --version
took "install" "$start"

step "build ${TARGETS[*]}"
start=$SECONDS
if (($# > 0)); then
    for target in "${TARGETS[@]}"; do
        nice -n "$FUZZ_NICE" cargo "+$TOOLCHAIN" fuzz build "$target"
    done
else
    nice -n "$FUZZ_NICE" cargo "+$TOOLCHAIN" fuzz build
fi
took "build" "$start"

failed=()
for target in "${TARGETS[@]}"; do
    step "run $target for ${FUZZ_SECONDS} s"
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="fuzz/artifacts/$target/fuzz.log"
    dict=()
    if [[ -f "fuzz/dicts/$target.dict" ]]; then
        dict=("-dict=fuzz/dicts/$target.dict")
    fi
    # Saved findings are read (never written) with the seeds, so a
    # regression fails the run at once.
    corpora=("fuzz/corpus/$target" "fuzz/seeds/$target")
    if [[ -d "fuzz/regressions/$target" ]]; then
        corpora+=("fuzz/regressions/$target")
    fi
    start=$SECONDS
    status=0
    nice -n "$FUZZ_NICE" cargo "+$TOOLCHAIN" fuzz run "$target" "${corpora[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
        "${dict[@]}" >"$log" 2>&1 || status=$?
    execs="$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log" | tail -n 1)"
    printf '    %s: %s executions in %d s, exit %d\n' "$target" "${execs:-?}" \
        $((SECONDS - start)) "$status"
    if ((status != 0)); then
        failed+=("$target")
        tail -n 40 "$log"
        ls -l "fuzz/artifacts/$target"
    fi
done

step "summary"
took "total" "$total_start"
if ((${#failed[@]} > 0)); then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/, see fuzz/README.md to reproduce)"
    exit 1
fi
echo "no crash in ${TARGETS[*]}"
