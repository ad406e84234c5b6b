#!/usr/bin/env bash
# Runs each of lossc's cargo-fuzz targets for SECONDS (default 45): `check` (the parser and
# checker on any bytes), `data` (the JSON and .npz reader on any bytes) and `pipeline`
# (generated programs and data, the GPU kernel against the CPU evaluator; it needs a
# Vulkan driver, as the GPU tests do). docs/fuzzing.md says more.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# It installs cargo-fuzz (and a nightly toolchain) when missing. The seeds are
# fuzz/corpus/TARGET; what a run adds goes to fuzz/target/corpus/TARGET (ignored by git),
# where the next run starts from. A crash stops the script with status 1, its input in
# fuzz/artifacts/TARGET/ (reproduce with `cargo +nightly fuzz run TARGET FILE`, print a
# pipeline case's .loss and .json with `cargo +nightly fuzz fmt pipeline FILE`).
#
# LOSSC_FUZZ_SANITIZER picks the sanitizer (default `none`: see docs/fuzzing.md for why).
# LOSSC_FUZZ_PROFILE=dev builds without optimisation (scripts/test.sh does, for its brief
# run: the build is most of its cost); the default, `release`, is for long runs.
# LOSSC_FUZZ_FRESH=1 starts from the seeds alone and keeps nothing (scripts/test.sh does:
# a kept corpus of thousands of inputs would take minutes just to replay).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-45}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(check data pipeline)
sanitizer=${LOSSC_FUZZ_SANITIZER:-none}
case ${LOSSC_FUZZ_PROFILE:-release} in
    release) build=(-s "$sanitizer") ;;
    dev) build=(-s "$sanitizer" --dev) ;;
    *) echo "fuzz.sh: LOSSC_FUZZ_PROFILE is release or dev" >&2; exit 2 ;;
esac

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing the nightly toolchain (cargo fuzz needs it)" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Mesa's device-select layer complains about XDG_RUNTIME_DIR on headless machines.
export NODEVICE_SELECT=1

start=$(date +%s)
cargo +nightly fuzz build "${build[@]}"
echo "fuzz.sh: built in $(($(date +%s) - start))s" >&2

mkdir -p fuzz/target/logs
summary=()
for target in "${targets[@]}"; do
    if [ "${LOSSC_FUZZ_FRESH:-0}" = 1 ]; then
        corpus=fuzz/target/corpus/fresh-$target
        rm -rf "$corpus"
    else
        corpus=fuzz/target/corpus/$target
    fi
    mkdir -p "$corpus"
    args=(-max_total_time="$seconds" -print_final_stats=1)
    case $target in
        check) args+=(-dict=fuzz/check.dict) ;;
        # An execution builds a kernel and runs it on the GPU: allow it time, and memory
        # for the driver's shader compiler.
        pipeline) args+=(-timeout=60 -rss_limit_mb=4096) ;;
    esac
    log=fuzz/target/logs/$target.log
    echo "fuzz.sh: $target for ${seconds}s" >&2
    # The run's status goes through a file: the pipeline's own is tee's or grep's.
    rm -f "$log.status"
    {
        run_status=0
        cargo +nightly fuzz run "${build[@]}" "$target" "$corpus" "fuzz/corpus/$target" \
            -- "${args[@]}" 2>&1 || run_status=$?
        echo "$run_status" >"$log.status"
    } | tee "$log" \
        | grep --line-buffered -E '^(#[0-9]+ +(INITED|DONE)|==[0-9]+== ERROR|SUMMARY|thread .* panicked)' >&2 \
        || true
    status=$(cat "$log.status" 2>/dev/null || echo "unknown")
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    summary+=("$target: ${runs:-?} executions in ${seconds}s (${rate:-?}/s), exit status $status")
    if [ "$status" != 0 ]; then
        tail -60 "$log" >&2
        printf 'fuzz.sh: %s\n' "${summary[@]}" >&2
        exit 1
    fi
done
printf 'fuzz.sh: %s\n' "${summary[@]}" >&2
