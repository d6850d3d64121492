#!/bin/sh
# fuzz/rotate.sh SECONDS LOGDIR [TARGET...]
# Fuzzes the targets one after the other (all of them when none is named), each
# for SECONDS of wall time, at the lowest priority: one core in all. With
# FUZZ_CPU=1, SECONDS counts the fuzzer's CPU time instead (a niced fuzzer on a
# busy host gets less CPU than wall time): a run is interrupted (SIGINT, final
# statistics printed) once the target's runs have used SECONDS of CPU. Uses the
# binaries of `cargo +nightly fuzz build -s none` as they are, so a rebuild takes
# effect at the next target. A run that stops early (crash, timeout, out of
# memory) is restarted for the rest of its time; its input is in
# fuzz/artifacts/TARGET/. Each run's output goes to LOGDIR/TARGET.N.log, and one
# line per run to LOGDIR/runs.tsv: start, target, CPU seconds, executions,
# corpus files after the run, how it ended. A run stopped within
# seconds of its start passes to the next target. FUZZ_TIMEOUT (seconds, default
# 10) is libFuzzer's -timeout, which counts wall time: on a host busy with other
# work a niced fuzzer sees false hangs, so raise it there and re-run each
# timeout-* artifact alone to tell a real hang (over 10 s) from a starved one.
# Creating LOGDIR/stop ends the rotation: the fuzzer running is interrupted (its
# run recorded) and no other starts.
set -u
[ $# -ge 2 ] || { echo "usage: fuzz/rotate.sh SECONDS LOGDIR [TARGET...]" >&2; exit 2; }
secs=$1 logs=$2
shift 2
cd "$(dirname "$0")"
bin=target/x86_64-unknown-linux-gnu/release
tck=$(getconf CLK_TCK)
[ $# -gt 0 ] || set -- $(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^dmce-fuzz$')
mkdir -p "$logs"
[ -f "$logs/runs.tsv" ] || printf 'start\ttarget\tcpu_s\texecs\tcorpus\tend\n' > "$logs/runs.tsv"
# The CPU seconds process $1 has used, 0 once it is gone.
cpu_of() {
    awk -v t="$tck" '{ sub(/^.*\) /, ""); printf "%d", ($12 + $13) / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}
for t in "$@"; do
    [ ! -e "$logs/stop" ] || exit 0
    mkdir -p "corpus/$t" "artifacts/$t"
    if [ -f "corpus/$t.tar.zst" ] && [ -z "$(ls -A "corpus/$t")" ]; then
        tar --zstd -xf "corpus/$t.tar.zst" -C "corpus/$t"
    fi
    end=$(( $(date +%s) + secs )) used=0
    while if [ "${FUZZ_CPU:-0}" = 1 ]; then [ "$used" -lt "$secs" ]; else [ "$(date +%s)" -lt "$end" ]; fi; do
        if [ "${FUZZ_CPU:-0}" = 1 ]; then
            left=$(( (secs - used) * 20 ))
        else
            left=$(( end - $(date +%s) ))
        fi
        n=0
        while [ -e "$logs/$t.$n.log" ]; do n=$((n + 1)); done
        log="$logs/$t.$n.log"
        start=$(date -u +%H:%M:%S) t0=$(date +%s)
        RAYON_NUM_THREADS=1 /usr/bin/time -f '%U %S' -o "$log.time" nice -n 19 "$bin/$t" "corpus/$t" \
            -max_total_time="$left" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="artifacts/$t/" > "$log" 2>&1 &
        waiter=$!
        sleep 1
        fz=$(pgrep -P "$waiter" | head -1)
        while [ -n "$fz" ] && kill -0 "$fz" 2>/dev/null; do
            if [ -e "$logs/stop" ] ||
                { [ "${FUZZ_CPU:-0}" = 1 ] && [ $(( used + $(cpu_of "$fz") )) -ge "$secs" ]; }; then
                kill -INT "$fz"
                break
            fi
            sleep 5
        done
        wait "$waiter"
        cpu=$(awk 'END { printf "%.0f", $1 + $2 }' "$log.time")
        used=$(( used + cpu ))
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        how=$(sed -n 's/^SUMMARY: libFuzzer: //p; s/^==[0-9]*== ERROR: libFuzzer: out-of-memory.*/out-of-memory/p' "$log" | head -1)
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$start" "$t" "$cpu" "${execs:-?}" \
            "$(ls "corpus/$t" | wc -l)" "${how:-done}" >> "$logs/runs.tsv"
        # Stopped within seconds (on the corpus itself): on to the next target.
        [ $(( $(date +%s) - t0 )) -ge 10 ] || break
        [ ! -e "$logs/stop" ] || exit 0
    done
done
