#!/usr/bin/env bash
# Crash-state exploration speed: every kernel-lab trace replayed with a power cut
# explored after every statement (--crash-points statements) up to tier TIER (the era
# traces on `fixed`: their header names the 6.1 kernel's discard bug, HAZARDS H-E7,
# which E2 reports in era-crash and era-eras), and the bounded exhaustive generators
# of both targets on `fixed`; prints a Markdown table
# of crash points, states, distinct metadata views, wall and CPU seconds, and states
# per second of each (the tools' own figure, without process start-up). Not a test:
# run it by hand, e.g. benches/crash_speed.sh 2 3 (TIER, generator operations).
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:-2}
max_ops=${2:-3}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q
dmce=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
echo "| input | crash points | states | metadata views | wall s | CPU s | states/s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
# Times to the millisecond (bash's time); states/s is the tool's own figure (its
# summary line), measured around the replay alone.
TIMEFORMAT='%3R %3U %3S'
row() { # NAME COMMAND...
  local name=$1 t
  shift
  if ! t=$( { time "$@" > "$work/out" 2>&1; } 2>&1 ); then
    echo "$name: failed:" >&2
    tail -n 5 "$work/out" >&2
    exit 1
  fi
  local secs cpu points states views rate summary
  secs=$(awk '{print $1}' <<< "$t")
  cpu=$(awk '{printf "%.3f", $2 + $3}' <<< "$t")
  summary=$(tail -n 1 "$work/out")
  points=$(grep -o '[0-9]* crash points' <<< "$summary" | cut -d' ' -f1 || true)
  states=$(grep -o '[0-9]* \(crash \)\?states,' <<< "$summary" | grep -o '^[0-9]*')
  views=$(grep -o '[0-9]* distinct metadata views' <<< "$summary" | cut -d' ' -f1)
  rate=$(grep -o '[0-9]* states/s' <<< "$summary" | cut -d' ' -f1)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "${points:--}" "$states" "$views" \
    "$secs" "$cpu" "${rate:--}"
}
for t in tests/traces/kernel/*.dmtrace; do
  case $(basename "$t") in
    clone-millions* | era-millions*) continue ;; # bulk traces: replay speed, not crashes
    clone*) tool=(clone_replay) ;;
    era*) tool=(era_replay --variant fixed) ;;
  esac
  row "$(basename "$t" .dmtrace) (T$tier)" "$dmce" "${tool[@]}" --crash-points statements --tier "$tier" "$t"
done
row "clone generator ($max_ops ops)" "$dmce" clone_replay --generate --max-ops "$max_ops"
row "era generator ($max_ops ops)" "$dmce" era_replay --generate --max-ops "$max_ops"
