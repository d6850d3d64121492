#!/usr/bin/env bash
# Times and peak memory of the era read tools against Debian's thin-provisioning-tools
# 0.9.0 on one generated image (built with 0.9.0's own era_restore), and whether the
# outputs agree. Not a test: run it by hand, e.g.
#   benches/read_tools.sh 1000000 3
# (NR_BLOCKS, archived ERAS). Needs /usr/bin/time and thin-provisioning-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
nr=${1:-1000000}
eras=${2:-3}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q
ours=$PWD/target/release/dmce
xml=$work/era-$nr-$eras.xml
img=$work/era-$nr-$eras.img
if [ ! -s "$img" ]; then
  python3 benches/gen_era_xml.py "$nr" "$eras" 1 > "$xml"
  rm -f "$img"
  truncate -s $(( (nr / 4096 + 16384) * 4096 * 2 )) "$img"
  era_restore -i "$xml" -o "$img"
fi
since=$(( eras ))
printf '%-36s %12s %12s %12s %12s  %s\n' "command ($nr blocks)" "0.9.0 s" "dmce s" "0.9.0 KiB" "dmce KiB" "outputs"
for cmd in "era_check" "era_dump" "era_dump --logical" "era_invalidate --written-since $since"; do
  /usr/bin/time -f "%e %M" -o "$work/t_peer" $cmd "$img" > "$work/o_peer" 2>/dev/null || true
  /usr/bin/time -f "%e %M" -o "$work/t_ours" "$ours" $cmd "$img" > "$work/o_ours" 2>/dev/null || true
  read -r ps pk < "$work/t_peer"
  read -r os ok < "$work/t_ours"
  sed -i 's/end = "/end="/' "$work/o_peer"
  case "$cmd" in
    era_check) same="(different messages)" ;;
    "era_dump --logical") same=$(cmp -s "$work/o_peer" "$work/o_ours" && echo identical || echo "differ: 0.9.0 keeps the lowest era of overlapping writesets") ;;
    *) same=$(cmp -s "$work/o_peer" "$work/o_ours" && echo identical || echo DIFFERENT) ;;
  esac
  printf '%-36s %12s %12s %12s %12s  %s\n' "$cmd" "$ps" "$os" "$pk" "$ok" "$same"
done
