#!/usr/bin/env bash
# Time, peak memory and output size of every --format of the dumps, era_invalidate
# and the checkers on large generated images: an era image of NR_BLOCKS blocks with
# ERAS archived writesets and a clone image of NR_BLOCKS regions. The JSON and the
# summaries stream like the XML, so their peak memory must not grow with the image.
# With BASE=path/to/dmce (a build of an earlier commit) the XML and text outputs are
# compared byte for byte with that build's, and timed. Not a test: run it by hand,
# e.g.
#   BASE=/path/to/old/dmce benches/formats.sh 16777216 3
# Needs /usr/bin/time and python3; images are kept in $BENCH_DIR (target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
nr=${1:-16777216}
eras=${2:-3}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q
ours=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
base=${BASE:-}

era=$work/formats-era-$nr-$eras.img
if [ ! -s "$era" ]; then
  python3 benches/gen_era_xml.py "$nr" "$eras" 1 marked > "$work/formats-era.xml"
  rm -f "$era"
  truncate -s "$("$ours" era_metadata_size --nr-blocks "$nr" --writesets $((eras + 1)) -u b -n)" "$era"
  "$ours" era_restore -q -i "$work/formats-era.xml" -o "$era"
  rm -f "$work/formats-era.xml"
fi
clone=$work/formats-clone-$nr.img
if [ ! -s "$clone" ]; then
  # Hydrated runs of 1-30 regions separated by gaps of 1-200, as the era writesets.
  python3 - "$nr" > "$work/formats-clone.xml" <<'EOF'
import random, sys
n = int(sys.argv[1]); rng = random.Random(1); out = sys.stdout
out.write(f'<superblock uuid="" region_size="8" target_size="{n * 8}" nr_regions="{n}">\n')
b = 0
while True:
    b += rng.randrange(1, 200)
    if b >= n:
        break
    e = min(b + rng.randrange(1, 30), n)
    out.write(f'  <hydrated begin="{b}" end="{e}"/>\n')
    b = e
out.write('</superblock>\n')
EOF
  rm -f "$clone"
  truncate -s "$("$ours" clone_metadata_size --nr-regions "$nr" -u b -n)" "$clone"
  "$ours" clone_restore -q -i "$work/formats-clone.xml" -o "$clone"
  rm -f "$work/formats-clone.xml"
fi

printf '%-48s %8s %10s %14s  %s\n' "command ($nr blocks/regions)" "seconds" "peak KiB" "output bytes" "vs BASE"
run() {
  local img=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/t" "$ours" "$@" "$img" > "$work/o" 2> /dev/null || true
  read -r s k < "$work/t"
  local cmpres=""
  if [ -n "$base" ] && ! printf '%s\n' "$@" | grep -qx -- --format; then
    /usr/bin/time -f "%e %M" -o "$work/tb" "$base" "$@" "$img" > "$work/ob" 2> /dev/null || true
    read -r bs bk < "$work/tb"
    if cmp -s "$work/o" "$work/ob"; then cmpres="identical (BASE $bs s, $bk KiB)"; else cmpres="DIFFERENT"; fi
  fi
  printf '%-48s %8s %10s %14s  %s\n' "$*" "$s" "$k" "$(stat -c %s "$work/o")" "$cmpres"
}
for f in "" "--format json" "--format human"; do
  # shellcheck disable=SC2086
  run "$era" era_dump $f
  # shellcheck disable=SC2086
  [ "$f" = "--format human" ] || run "$era" era_dump --logical $f
done
run "$era" era_invalidate --written-since "$eras"
run "$era" era_invalidate --written-since "$eras" --format json
run "$era" era_check
run "$era" era_check --format json
for f in "" "--format json" "--format human"; do
  # shellcheck disable=SC2086
  run "$clone" clone_dump $f
done
run "$clone" clone_check
run "$clone" clone_check --format json
rm -f "$work/o" "$work/ob"
