#!/usr/bin/env bash
# Replay speed of clone_replay / era_replay: the kernel-lab traces clone-partial
# and era-eras tiled to about a million statements each (benches/replay_speed.py),
# timed with /usr/bin/time; prints statements per second of wall-clock and of CPU
# (user + system) time, and peak memory. On a shared machine the CPU figure is
# the one to compare. Not a test: run it by hand, e.g. benches/replay_speed.sh 50000
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-50000}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q
dmce=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
printf '%-16s %10s %9s %12s %9s %12s %10s\n' trace statements "wall s" "stmts/s" "cpu s" "stmts/cpu-s" "peak KiB"
for case in clone-partial clone-rs8 era-eras era-small; do
  tool=clone_replay
  case $case in era*) tool=era_replay ;; esac
  t=$work/tiled-$case.dmtrace
  python3 benches/replay_speed.py "tests/traces/kernel/$case.dmtrace" "$reps" > "$t" 2> "$work/n"
  n=$(cut -d' ' -f1 "$work/n")
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$dmce" "$tool" -q "$t" -o "$work/tiled.img"
  read -r secs user sys kib < "$work/time"
  cpu=$(echo "$user + $sys" | bc -l)
  printf '%-16s %10s %9s %12.0f %9.2f %12.0f %10s\n' "$case" "$n" "$secs" \
    "$(echo "$n / $secs" | bc -l)" "$cpu" "$(echo "$n / $cpu" | bc -l)" "$kib"
done
