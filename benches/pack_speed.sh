#!/usr/bin/env bash
# Pack sizes and times of clone_metadata_pack / era_metadata_pack and their unpack
# tools: on the large kernel fixtures (clone-millions, era-millions) and on two
# generated images (a dm-clone one of CLONE_REGIONS regions, a third hydrated in
# runs; a dm-era one of ERA_BLOCKS blocks with 4 archived writesets), made with our
# restore tools. For each: the image size, the blocks in use, the pack size (blocks
# in use, and --all-blocks), the best of 3 wall-clock times and the peak memory of a
# pack and of an unpack, and whether the unpacked image equals the original. With
# DMCE_PEER_PDATA_TOOLS=/path/to/pdata_tools (thin-provisioning-tools 1.3.3) the same
# for its thin_metadata_pack / thin_metadata_unpack. Not a test: run it by hand, e.g.
#   benches/pack_speed.sh 1073741824 16777216
set -euo pipefail
cd "$(dirname "$0")/.."
clone_regions=${1:-1073741824}
era_blocks=${2:-16777216}
work=${BENCH_DIR:-${CARGO_TARGET_DIR:-target}/bench}
mkdir -p "$work"
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/dmce
peer=${DMCE_PEER_PDATA_TOOLS:-}

# Generated images (kept between runs).
clone_img=$work/clone-$clone_regions.img
if [ ! -s "$clone_img" ]; then
  python3 - "$clone_regions" > "$work/clone.xml" <<'EOF'
import random, sys
n = int(sys.argv[1]); rng = random.Random(1); out = sys.stdout
out.write(f'<superblock uuid="" region_size="8" target_size="{n * 8}" nr_regions="{n}">\n')
b = 0
while b < n:
    b += rng.randrange(1, 4000)
    run = rng.randrange(1, 2000)
    if b < n:
        out.write(f'  <hydrated begin="{b}" end="{min(b + run, n)}"/>\n')
    b += run
out.write('</superblock>\n')
EOF
  truncate -s "$("$bin" clone_metadata_size --nr-regions "$clone_regions" -u b -n)" "$clone_img"
  "$bin" clone_restore -q -i "$work/clone.xml" -o "$clone_img"
fi
era_img=$work/era-$era_blocks.img
if [ ! -s "$era_img" ]; then
  python3 benches/gen_era_xml.py "$era_blocks" 4 1 marked > "$work/era.xml"
  truncate -s "$("$bin" era_metadata_size --nr-blocks "$era_blocks" --writesets 5 -u b -n)" "$era_img"
  "$bin" era_restore -q -i "$work/era.xml" -o "$era_img"
fi
for f in clone-millions era-millions; do
  zstd -dqf "fixtures/kernel/$f/metadata.img.zst" -o "$work/$f.img"
done

# best TIME_AND_KIB of 3 runs of a command
best() {
  local t m bt="" bm=""
  for _ in 1 2 3; do
    rm -f "$work/out.img"
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2>&1 || { echo "FAILED"; return; }
    read -r t m < "$work/time"
    if [ -z "$bt" ] || [ "$(echo "$t < $bt" | bc)" = 1 ]; then bt=$t; fi
    if [ -z "$bm" ] || [ "$m" -gt "$bm" ]; then bm=$m; fi
  done
  echo "$bt s ${bm} KiB"
}

printf '%-22s %10s %8s %10s %10s %-20s %-20s %s\n' image "MiB" "in use" "pack B" "all B" "pack" "unpack" "unpacked"
for img in "$work/clone-millions.img" "$work/era-millions.img" "$clone_img" "$era_img"; do
  name=$(basename "$img" .img)
  t=${name%%-*}
  mib=$(( $(stat -c %s "$img") >> 20 ))
  "$bin" "${t}_metadata_pack" -q -i "$img" -o "$work/p.pack"
  "$bin" "${t}_metadata_pack" -q --all-blocks -i "$img" -o "$work/a.pack"
  used=$("$bin" "${t}_metadata_pack" -i "$img" -o "$work/p.pack" | sed 's/.*packed \([0-9]*\) of.*/\1/')
  tp=$(best "$bin" "${t}_metadata_pack" -q -i "$img" -o "$work/p.pack")
  tu=$(best "$bin" "${t}_metadata_unpack" -q -i "$work/a.pack" -o "$work/out.img")
  "$bin" "${t}_metadata_unpack" -q -i "$work/a.pack" -o "$work/out.img"
  same=$(cmp -s "$img" "$work/out.img" && echo identical || echo DIFFERENT)
  printf '%-22s %10s %8s %10s %10s %-20s %-20s %s\n' "$name" "$mib" "$used" \
    "$(stat -c %s "$work/p.pack")" "$(stat -c %s "$work/a.pack")" "$tp" "$tu" "$same"
  if [ -n "$peer" ]; then
    rm -f "$work/t.pack"
    tp=$(best "$peer" thin_metadata_pack -i "$img" -o "$work/t.pack")
    "$peer" thin_metadata_pack -i "$img" -o "$work/t.pack"
    if [ "$t" = era ]; then
      tu=$(best "$peer" thin_metadata_unpack -i "$work/a.pack" -o "$work/out.img")
      rm -f "$work/out.img"
      "$peer" thin_metadata_unpack -i "$work/a.pack" -o "$work/out.img" > /dev/null 2>&1
      same="$(cmp -s "$img" "$work/out.img" && echo identical || echo DIFFERENT) (1.3.3 unpack of our pack)"
    else
      tu="-"
      same="(1.3.3 cannot unpack dm-clone packs)"
    fi
    printf '%-22s %10s %8s %10s %10s %-20s %-20s %s\n' "  1.3.3" "" "" \
      "$(stat -c %s "$work/t.pack")" "" "$tp" "$tu" "$same"
  fi
done
