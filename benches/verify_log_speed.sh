#!/usr/bin/env bash
# Speed of clone_verify_log / era_verify_log on the kernel lab's captures
# (fixtures/kernel-logs/), timed with /usr/bin/time: megabytes of log read per
# second and peak memory, per case and mode. Not a test: run it by hand, e.g.
# benches/verify_log_speed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-target/bench}/kernel-logs
mkdir -p "$work"
cargo build --release -q
dmce=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
printf '%-28s %-12s %9s %8s %9s %9s\n' case mode "log MB" seconds "MB/s" "peak KiB"
for c in fixtures/kernel-logs/*/; do
  name=$(basename "$c")
  d=$work/$name
  mkdir -p "$d"
  for f in "$c"*.gz; do gzip -dc "$f" > "$d/$(basename "$f" .gz)"; done
  case $name in
    era*) tool=era_verify_log; data=(--origin-log "$d/origin.log" --origin "$d/origin.img") ;;
    *) tool=clone_verify_log; data=(--dest-log "$d/dest.log" --source "$d/source.img") ;;
  esac
  for mode in meta crash conformance; do
    args=(--mode "$mode" --meta-log "$d/meta.log")
    bytes=$(stat -c %s "$d/meta.log")
    case $mode in
      crash)
        grep -q '"power_cut": true' "$c/case.json" || continue
        args+=("${data[@]}" --user-log "$d/top.log")
        bytes=$((bytes + $(stat -c %s "${data[1]}") + $(stat -c %s "$d/top.log"))) ;;
      conformance)
        args+=(--user-log "$d/top.log")
        bytes=$((bytes + $(stat -c %s "$d/top.log"))) ;;
    esac
    # Ten runs in one timing: the logs are small.
    /usr/bin/time -f "%e %M" -o "$work/time" \
      sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do "$@" || true; done' sh "$dmce" "$tool" -q "${args[@]}"
    read -r secs kib < <(tail -n 1 "$work/time")
    secs=$(echo "$secs / 10" | bc -l)
    printf '%-28s %-12s %9.2f %8.3f %9.1f %9s\n' "$name" "$mode" "$(echo "$bytes / 1000000" | bc -l)" \
      "$secs" "$(echo "$bytes / 1000000 / ($secs + 0.0005)" | bc -l)" "$kib"
  done
done
