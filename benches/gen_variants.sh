#!/usr/bin/env bash
# The bounded exhaustive generators on `fixed` and on every variant: for each, the
# traces run, crash states, distinct metadata views, violating traces, the number
# of the first violating trace, the invariants that fired and the wall time.
# Prints a Markdown table. Not a test: run it by hand, e.g.
# benches/gen_variants.sh 3 (the number of user operations per trace).
set -euo pipefail
cd "$(dirname "$0")/.."
max_ops=${1:-3}
cargo build --release -q
dmce=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
# The tool names its target's variants when asked for one it does not know.
variants_of() {
  { "$dmce" "$1_replay" --generate --variant '?' 2>&1 || true; } | sed -n 's/.*; variants: //p' | tr -d ','
}
echo "| target | variant | traces | crash states | metadata views | violating | first at | invariants | wall s |"
echo "|---|---|---:|---:|---:|---:|---:|---|---:|"
TIMEFORMAT='%2R'
for target in clone era; do
  variants=$(variants_of "$target")
  [ -n "$variants" ] || { echo "gen_variants.sh: no variant list from $dmce" >&2; exit 1; }
  for v in $variants; do
    t=$( { time "$dmce" "${target}_replay" --generate --max-ops "$max_ops" --variant "$v" > /tmp/gen_variants.out 2>&1 || true; } 2>&1 )
    s=$(grep -m1 "variant $v:" /tmp/gen_variants.out || true)
    [ -n "$s" ] || { echo "| $target | $v | (not run: $(tail -n1 /tmp/gen_variants.out)) |||||||"; continue; }
    traces=$(sed -n 's/.*: \([0-9]*\) traces of.*/\1/p' <<< "$s")
    states=$(sed -n 's/.*, \([0-9]*\) crash states.*/\1/p' <<< "$s")
    views=$(sed -n 's/.*, \([0-9]*\) distinct metadata views.*/\1/p' <<< "$s")
    bad=$(sed -n 's/.*, \([0-9]*\) violating traces.*/\1/p' <<< "$s")
    ids=$(sed -n 's/.*violating traces (\([^)]*\)).*/\1/p' <<< "$s")
    first=$(sed -n 's/^first violating trace: number \([0-9]*\) of.*/\1/p' /tmp/gen_variants.out)
    echo "| $target | $v | $traces | $states | $views | $bad | ${first:--} | ${ids:--} | $t |"
  done
done
