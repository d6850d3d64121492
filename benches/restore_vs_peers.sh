#!/usr/bin/env bash
# era_restore against thin-provisioning-tools 1.3.3 and Debian's 0.9.0, run in
# alternation; prints the median wall time, CPU time, peak memory and XML rate of
# each, and checks that every image restored dumps the same. Not a test: run it
# by hand, e.g.
#   PDATA_TOOLS=/path/to/1.3.3/pdata_tools benches/restore_vs_peers.sh 16777216 20 5
# (NR_BLOCKS, archived ERAS, RUNS, FORM). The XML comes from gen_era_xml.py in
# FORM (default `set-bits`: one `<bit value="true">` per set bit, the form all
# three restores read right; with `marked`, 1.3.3 restores runs that cross a
# 64-block boundary wrong and 0.9.0 cannot read it at all) into $BENCH_DIR
# (default target/bench); outputs go to $OUT_DIR (default /dev/shm), so the
# figures are those of the tools, not of the disk. 1.3.3 is built from its
# public source (it needs libdevmapper-dev and libclang-dev); 0.9.0 is Debian's
# /usr/sbin/era_restore (ERA_RESTORE_090 names another); a peer that is absent
# is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
nr=${1:-16777216}
eras=${2:-20}
runs=${3:-5}
form=${4:-set-bits}
work=${BENCH_DIR:-target/bench}
out=${OUT_DIR:-/dev/shm}
mkdir -p "$work"
cargo build --release -q
ours=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
xml=$work/era-$nr-$eras-$form.xml
[ -s "$xml" ] || python3 benches/gen_era_xml.py "$nr" "$eras" 1 "$form" > "$xml"
# The size era_restore requires (one more writeset in case the XML ends one era
# before the current one); the peers get the same.
size=$("$ours" era_metadata_size --nr-blocks "$nr" --writesets $((eras + 1)) -u b -n)
declare -A cmd
cmd[dmce]="$ours era_restore -q"
[ -n "${PDATA_TOOLS:-}" ] && cmd[1.3.3]="$PDATA_TOOLS era_restore"
old=${ERA_RESTORE_090:-/usr/sbin/era_restore}
[ -x "$old" ] && [ "$form" != marked ] && cmd[0.9.0]="$old"
printf 'input: %s (%s bytes), %d blocks, %d writesets; %d runs each, alternating\n' \
  "$xml" "$(stat -L -c %s "$xml")" "$nr" "$eras" "$runs"
for i in $(seq "$runs"); do
  for who in "${!cmd[@]}"; do
    img=$out/restore-bench-$who.img
    rm -f "$img"
    truncate -s "$size" "$img"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %U %S %M" -a -o "$work/times-$who" ${cmd[$who]} -i "$xml" -o "$img" > /dev/null
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %10s %10s %12s %10s\n' tool "wall s" "cpu s" "peak KiB" "MB/s"
for who in "${!cmd[@]}"; do
  t=$work/times-$who
  wall=$(tail -n "$runs" "$t" | awk '{print $1}' | median)
  cpu=$(tail -n "$runs" "$t" | awk '{print $2 + $3}' | median)
  kib=$(tail -n "$runs" "$t" | awk '{print $4}' | median)
  mbs=$(awk -v b="$(stat -L -c %s "$xml")" -v s="$wall" 'BEGIN {printf "%.0f", b / s / 1e6}')
  printf '%-8s %10s %10s %12s %10s\n' "$who" "$wall" "$cpu" "$kib" "$mbs"
  rm -f "$t"
done
want=$("$ours" era_dump "$out/restore-bench-dmce.img" | md5sum)
for who in "${!cmd[@]}"; do
  got=$("$ours" era_dump "$out/restore-bench-$who.img" | md5sum)
  [ "$got" = "$want" ] && echo "$who: dumps the same as dmce's image" || echo "$who: DIFFERENT dump"
  rm -f "$out/restore-bench-$who.img"
done
