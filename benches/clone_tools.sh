#!/usr/bin/env bash
# Every clone tool that reads or writes the metadata, on generated metadata, each
# against a cached `dd` of the same bytes: clone_restore, clone_repair and
# clone_metadata_unpack against a dd writing the image; clone_check and
# clone_metadata_pack against a dd reading it; clone_dump against a dd writing the
# XML. Each tool and its dd run in alternation RUNS times under /usr/bin/time;
# printed is a Markdown table of the medians of the wall time and of the CPU time
# (user + sys: the machine may be shared), the peak memory, the MB/s of XML
# consumed (clone_restore) or produced (clone_dump) by wall and by CPU time, and
# the tool's wall time over dd's. Not a test: run it by hand, e.g.
#   benches/clone_tools.sh 5 sparse dense
# (RUNS, then the inputs: `sparse` is 100,000 ranges of 1..5000 regions, `dense`
# 4,000,000 ranges of 1..64, both over 2^30 regions; see gen_clone_xml.py).
# NR_REGIONS=4194304 gives a quick run on a smaller device (the presets' number of
# ranges scaled to it). The XML is generated once into $BENCH_DIR (default
# $CARGO_TARGET_DIR/bench, else target/bench) and kept there, never in the
# repository; images and outputs go to $OUT_DIR (default /dev/shm), so the
# figures are those of the tools, not of a disk. It checks that the dump of each
# restored image is the XML it came from, byte for byte, and that the repaired
# and unpacked images dump to it too.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(sparse dense)
target=${CARGO_TARGET_DIR:-target}
work=${BENCH_DIR:-$target/bench}
out=${OUT_DIR:-/dev/shm}
nr=${NR_REGIONS:-$((1 << 30))}
mkdir -p "$work"
cargo build --release -q
bin=$(realpath "$target")/release/dmce
# The metadata device the kernel needs for this geometry (the restores refuse less).
size=$("$bin" clone_metadata_size --nr-regions "$nr" -u b -n)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Times to the millisecond from the shell (GNU time gives hundredths), the peak
# memory from /usr/bin/time.
TIMEFORMAT='%3R %3U %3S'
# timed NAME CMD...: appends "wall cpu KiB" of one run to $work/t-NAME
timed() {
  local name=$1 t
  shift
  if ! t=$( { time /usr/bin/time -f "%M" -o "$work/t1" "$@" > /dev/null 2> "$work/err"; } 2>&1 ); then
    echo "failed: $*" >&2
    cat "$work/err" >&2
    exit 1
  fi
  echo "$t $(cat "$work/t1")" | awk '{print $1, $2 + $3, $4}' >> "$work/t-$name"
}
# row LABEL NAME DD_NAME XML_BYTES: one row of the table from the runs kept
row() {
  local t=$work/t-$2 d=$work/t-$3 wall cpu kib dwall dcpu
  wall=$(awk '{print $1}' "$t" | median)
  cpu=$(awk '{print $2}' "$t" | median)
  kib=$(awk '{print $3}' "$t" | median)
  dwall=$(awk '{print $1}' "$d" | median)
  dcpu=$(awk '{print $2}' "$d" | median)
  awk -v l="$1" -v w="$wall" -v c="$cpu" -v k="$kib" -v dw="$dwall" -v dc="$dcpu" -v b="$4" -v dd="$5" 'BEGIN {
    mbs = (b > 0 && w > 0) ? sprintf("%.0f", b / w / 1e6) : "-";
    mbc = (b > 0 && c > 0) ? sprintf("%.0f", b / c / 1e6) : "-";
    vs = (dw > 0) ? sprintf("%.2fx", w / dw) : "-";
    printf "| %s | %.3f | %.3f | %.1f | %s | %s | %s | %.3f | %.3f | %s |\n", l, w, c, k / 1024, mbs, mbc, dd, dw, dc, vs }'
}

printf 'dmce %s; %s; %d runs each, alternating with dd; outputs in %s; %s\n' \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(uname -srm)" "$runs" "$out" \
  "$(date -u '+%Y-%m-%d %H:%M UTC')"
for kind in "${kinds[@]}"; do
  xml=$work/clone-$kind-$nr-1.xml
  [ -s "$xml" ] || python3 benches/gen_clone_xml.py "$kind" 1 "$nr" > "$xml"
  bytes=$(stat -c %s "$xml")
  img=$out/clone-bench-$kind.img
  pack=$out/clone-bench-$kind.pack
  rm -f "$img" "$pack"
  truncate -s "$size" "$img"
  "$bin" clone_restore -q -i "$xml" -o "$img"
  "$bin" clone_dump "$img" | cmp -s - "$xml" || { echo "$kind: the dump differs from the XML restored" >&2; exit 1; }
  "$bin" clone_metadata_pack -q -i "$img" -o "$pack"
  rm -f "$work"/t-*
  cat "$xml" "$img" "$pack" > /dev/null
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
    rm -f "$out/clone-bench-rep.img"
    truncate -s "$size" "$out/clone-bench-rep.img"
    timed repair "$bin" clone_repair -q -i "$img" -o "$out/clone-bench-rep.img"
    rm -f "$out/clone-bench-p.pack"
    timed pack "$bin" clone_metadata_pack -q -i "$img" -o "$out/clone-bench-p.pack"
    rm -f "$out/clone-bench-u.img"
    timed unpack "$bin" clone_metadata_unpack -q -i "$pack" -o "$out/clone-bench-u.img"
  done
  cmp -s "$out/clone-bench-d.xml" "$xml" || { echo "$kind: clone_dump -o differs from the XML" >&2; exit 1; }
  for i in r rep u; do
    "$bin" clone_dump "$out/clone-bench-$i.img" | cmp -s - "$xml" ||
      { echo "$kind: clone-bench-$i.img does not dump to the XML" >&2; exit 1; }
  done
  echo
  echo "$kind: $nr regions, $(grep -c '<hydrated' "$xml") ranges, $bytes bytes of XML, image $(( size >> 20 )) MiB, pack $(stat -c %s "$pack") bytes"
  echo
  echo '| tool | wall s | cpu s | peak MiB | XML MB/s | XML MB/s of cpu | dd of the same bytes | dd wall s | dd cpu s | wall / dd |'
  echo '|---|---|---|---|---|---|---|---|---|---|'
  row "clone_restore" restore dd-image-write "$bytes" "image written"
  row "clone_repair" repair dd-image-write 0 "image written"
  row "clone_metadata_unpack" unpack dd-image-write 0 "image written"
  row "clone_check" check dd-image-read 0 "image read"
  row "clone_metadata_pack" pack dd-image-read 0 "image read"
  row "clone_dump" dump dd-xml-write "$bytes" "XML written"
  rm -f "$img" "$pack" "$out"/clone-bench-{r.img,dd.img,d.xml,dd.xml,rep.img,p.pack,u.img} "$work"/t-* "$work/t1" "$work/err"
done
