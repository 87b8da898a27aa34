#!/usr/bin/env bash
# make fuzz: runs each cargo-fuzz target (or those named as arguments) for
# FUZZ_SECONDS (default 60), one after another, and fails if any crashed.
#
# - cargo-fuzz is installed with cargo when missing; libFuzzer needs a
#   nightly compiler: the nightly toolchain when rustup has or can get it,
#   else the installed one with RUSTC_BOOTSTRAP=1 (the same flags).
# - Builds are cached under ~/.cache/wren-fuzz/target; each target's
#   growing corpus lives in ~/.cache/wren-fuzz/corpus/<target>, seeded
#   from the committed fuzz/corpus/<target> (which libFuzzer only reads).
# - A crash or hang is written to target/fuzz-artifacts/<target>/; once
#   fixed, copy it to fuzz/regressions/<target>/, where `make test`
#   replays it (src/fuzz.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/wren-fuzz
export CARGO_TARGET_DIR=$CACHE/target

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1 \
    || rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    echo "fuzz: no nightly toolchain to be had; using $(rustc --version) with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

cargo "${toolchain[@]}" fuzz build --release

failed=()
for target in "${targets[@]}"; do
    corpus=$CACHE/corpus/$target
    artifacts=target/fuzz-artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    echo "== fuzz $target: ${FUZZ_SECONDS}s"
    log=$(mktemp)
    if cargo "${toolchain[@]}" fuzz run --release "$target" "$corpus" "fuzz/corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        awk '/stat::number_of_executed_units|stat::peak_rss_mb/ {printf "   %s %s\n", $1, $2}
             /^Done [0-9]+ runs/ {print "   " $0}' "$log"
        echo "   corpus: $(find "$corpus" -type f | wc -l) inputs"
    else
        failed+=("$target")
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written|assert" "$log" | head -20 | sed 's/^/   /'
    fi
    rm -f "$log"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: crashes in ${failed[*]}; inputs in target/fuzz-artifacts/"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${FUZZ_SECONDS}s each, no crash"
