#!/usr/bin/env bash
# clone_restore, clone_check and clone_dump on generated 2^30-region metadata, each
# against a cached `dd` of the same bytes: the image for clone_restore (written)
# and clone_check (read), the XML for clone_dump (written). Each tool and its dd
# run in alternation RUNS times under /usr/bin/time; printed are the medians of
# the wall time and of the CPU time (user + sys: the machine may be shared), the
# peak memory, the MB/s of XML consumed (clone_restore) or produced (clone_dump)
# by wall and by CPU time, and the tool's time over dd's. Not a test: run it by
# hand, e.g.
#   benches/clone_tools.sh 5 sparse dense
# (RUNS, then the inputs: `sparse` is 100,000 ranges of 1..5000 regions, `dense`
# 4,000,000 ranges of 1..64; see gen_clone_xml.py). The XML is generated once into
# $BENCH_DIR (default $CARGO_TARGET_DIR/bench, else target/bench) and kept there,
# never in the repository; images and outputs go to $OUT_DIR (default /dev/shm),
# so the figures are those of the tools, not of a disk. It checks that the dump
# of each restored image is the XML it came from, byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(sparse dense)
target=${CARGO_TARGET_DIR:-target}
work=${BENCH_DIR:-$target/bench}
out=${OUT_DIR:-/dev/shm}
mkdir -p "$work"
cargo build --release -q
bin=$(realpath "$target")/release/dmce
nr=$((1 << 30))
# The region bitset (nr / 8 bytes) with room for its index and the space map.
size=$(( nr / 8 * 5 / 4 + (16 << 20) ))

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# timed NAME CMD...: appends "wall cpu KiB" of one run to $work/t-NAME
timed() {
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/t1" "$@" > /dev/null
  awk '{print $1, $2 + $3, $4}' "$work/t1" >> "$work/t-$name"
}
# row LABEL NAME DD_NAME XML_BYTES: one line of the table from the runs kept
row() {
  local t=$work/t-$2 d=$work/t-$3 wall cpu kib dwall dcpu
  wall=$(awk '{print $1}' "$t" | median)
  cpu=$(awk '{print $2}' "$t" | median)
  kib=$(awk '{print $3}' "$t" | median)
  dwall=$(awk '{print $1}' "$d" | median)
  dcpu=$(awk '{print $2}' "$d" | median)
  awk -v l="$1" -v w="$wall" -v c="$cpu" -v k="$kib" -v dw="$dwall" -v dc="$dcpu" -v b="$4" 'BEGIN {
    mbs = (b > 0 && w > 0) ? sprintf("%.0f", b / w / 1e6) : "-";
    mbc = (b > 0 && c > 0) ? sprintf("%.0f", b / c / 1e6) : "-";
    printf "%-22s %8.2f %8.2f %10d %9s %9s %8.2f %8.2f %7.1fx\n", l, w, c, k, mbs, mbc, dw, dc, (dw > 0 ? w / dw : 0) }'
}

printf 'dmce %s; %d runs each, alternating with dd; outputs in %s; %s\n' \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$runs" "$out" "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-22s %8s %8s %10s %9s %9s %8s %8s %8s\n' \
  "tool (input)" "wall s" "cpu s" "peak KiB" "MB/s" "MB/s cpu" "dd wall" "dd cpu" "vs dd"
for kind in "${kinds[@]}"; do
  xml=$work/clone-$kind-1.xml
  [ -s "$xml" ] || python3 benches/gen_clone_xml.py "$kind" 1 > "$xml"
  bytes=$(stat -c %s "$xml")
  img=$out/clone-bench-$kind.img
  rm -f "$img"
  truncate -s "$size" "$img"
  "$bin" clone_restore -q -i "$xml" -o "$img"
  "$bin" clone_dump "$img" | cmp -s - "$xml" || { echo "$kind: the dump differs from the XML restored" >&2; exit 1; }
  rm -f "$work"/t-*
  cat "$xml" "$img" > /dev/null
  for _ in $(seq "$runs"); do
    rm -f "$out/clone-bench-r.img"
    truncate -s "$size" "$out/clone-bench-r.img"
    timed restore "$bin" clone_restore -q -i "$xml" -o "$out/clone-bench-r.img"
    rm -f "$out/clone-bench-dd.img"
    timed dd-image-write dd if="$img" of="$out/clone-bench-dd.img" bs=1M status=none
    timed check "$bin" clone_check -q "$img"
    timed dd-image-read dd if="$img" of=/dev/null bs=1M status=none
    rm -f "$out/clone-bench-d.xml"
    timed dump "$bin" clone_dump "$img" -o "$out/clone-bench-d.xml"
    rm -f "$out/clone-bench-dd.xml"
    timed dd-xml-write dd if="$xml" of="$out/clone-bench-dd.xml" bs=1M status=none
  done
  cmp -s "$out/clone-bench-d.xml" "$xml" || { echo "$kind: clone_dump -o differs from the XML" >&2; exit 1; }
  echo "$kind: $(printf "%'d" "$bytes") bytes of XML, image $(( size >> 20 )) MiB"
  row "clone_restore ($kind)" restore dd-image-write "$bytes"
  row "clone_check ($kind)" check dd-image-read 0
  row "clone_dump ($kind)" dump dd-xml-write "$bytes"
  rm -f "$img" "$out"/clone-bench-{r.img,dd.img,d.xml,dd.xml} "$work"/t-* "$work/t1"
done
