#!/usr/bin/env bash
# Peak memory and time of era_restore on a large generated XML, ours against
# Debian's thin-provisioning-tools 0.9.0, and whether both results check clean and
# dump the same. Not a test: run it by hand, e.g.
#   benches/era_restore.sh 16777216 3
# (NR_BLOCKS, archived ERAS; the XML of the default is about 6.5 GB and is kept in
# $BENCH_DIR, default target/bench). Needs /usr/bin/time, python3 and
# thin-provisioning-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
nr=${1:-16777216}
eras=${2:-3}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q
ours=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
xml=$work/era-$nr-$eras.xml
if [ ! -s "$xml" ]; then
  python3 benches/gen_era_xml.py "$nr" "$eras" 1 > "$xml"
fi
size=$(( (nr / 1018 + (eras + 1) * (nr / 32576 + 8) + 16384) * 4096 ))
printf 'input: %s (%s bytes), %d blocks, %d writesets; outputs of %d bytes\n' \
  "$xml" "$(stat -c %s "$xml")" "$nr" "$eras" "$size"
printf '%-28s %10s %12s\n' "command" "seconds" "peak KiB"
for who in debian dmce; do
  img=$work/restored-$who.img
  rm -f "$img"
  truncate -s "$size" "$img"
  if [ $who = debian ]; then cmd=(era_restore); else cmd=("$ours" era_restore -q); fi
  /usr/bin/time -f "%e %M" -o "$work/t_$who" "${cmd[@]}" -i "$xml" -o "$img" > /dev/null
  read -r s k < "$work/t_$who"
  printf '%-28s %10s %12s\n' "$who era_restore" "$s" "$k"
done
"$ours" era_check "$work/restored-dmce.img"
"$ours" era_check "$work/restored-debian.img"
era_check "$work/restored-dmce.img" && echo "0.9.0 era_check: ours OK"
if [ "${COMPARE_DUMPS:-1}" = 1 ]; then
  "$ours" era_dump "$work/restored-dmce.img" | cmp - "$xml" && echo "dump of our image == input"
  "$ours" era_dump "$work/restored-debian.img" | cmp - "$xml" && echo "dump of 0.9.0's image == input"
fi
