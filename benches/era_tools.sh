#!/usr/bin/env bash
# Every era read tool against thin-provisioning-tools 1.3.3 and Debian's 0.9.0 on
# one large image, run in alternation; prints a Markdown table of median wall
# times, peak memory and the ratio to the faster peer, then checks that the
# outputs agree. Not a test: run it by hand, e.g.
#   PDATA_TOOLS=/path/to/1.3.3/pdata_tools benches/era_tools.sh 16777216 20 3
# (NR_BLOCKS, archived ERAS, RUNS). The image is restored by dmce from
# gen_era_xml.py's `set-bits` XML (the input of restore_vs_peers.sh) and kept in
# $BENCH_DIR (default target/bench); outputs go to /dev/null. 1.3.3 is built from
# its public source; 0.9.0 is Debian's /usr/sbin (ERA_TOOLS_090 names another
# directory); a peer that is absent is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
nr=${1:-16777216}
eras=${2:-20}
runs=${3:-3}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q
ours=$(realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
xml=$work/era-$nr-$eras-set-bits.xml
img=$work/era-$nr-$eras.img
[ -s "$xml" ] || python3 benches/gen_era_xml.py "$nr" "$eras" 1 set-bits > "$xml"
if [ ! -s "$img" ]; then
  truncate -s $(( (nr / 1018 + (eras + 1) * (nr / 32576 + 8) + 16384) * 4096 )) "$img.tmp"
  "$ours" era_restore -q -i "$xml" -o "$img.tmp"
  mv "$img.tmp" "$img"
fi
old=${ERA_TOOLS_090:-/usr/sbin}
declare -A pre
pre[dmce]="$ours "
[ -n "${PDATA_TOOLS:-}" ] && pre[1.3.3]="$PDATA_TOOLS "
[ -x "$old/era_check" ] && pre[0.9.0]="$old/"
who_all=(dmce 1.3.3 0.9.0)
mid=$(( eras / 2 + 2 ))
cmds=("era_check" "era_check --super-block-only" "era_dump" "era_dump --logical"
  "era_invalidate --written-since 0" "era_invalidate --written-since $mid")
# Reads the image once so that every tool starts from the page cache.
cat "$img" > /dev/null
printf 'image: %s (%s bytes), %d blocks, %d writesets; medians of %d alternating runs\n\n' \
  "$img" "$(stat -c %s "$img")" "$nr" "$eras" "$runs"
printf '| command | dmce s | 1.3.3 s | 0.9.0 s | dmce / faster peer | dmce MiB | 1.3.3 MiB | 0.9.0 MiB |\n'
printf '|---|---|---|---|---|---|---|---|\n'
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for cmd in "${cmds[@]}"; do
  for who in "${who_all[@]}"; do rm -f "$work/t-$who"; done
  for _ in $(seq "$runs"); do
    for who in "${who_all[@]}"; do
      [ -n "${pre[$who]:-}" ] || continue
      # shellcheck disable=SC2086
      /usr/bin/time -f "%e %M" -a -o "$work/t-$who" ${pre[$who]}$cmd "$img" > /dev/null 2>&1 || true
    done
  done
  declare -A s=() m=()
  for who in "${who_all[@]}"; do
    if [ -s "$work/t-$who" ]; then
      s[$who]=$(grep -v status "$work/t-$who" | awk '{print $1}' | median)
      m[$who]=$(grep -v status "$work/t-$who" | awk '{printf "%.0f\n", $2 / 1024}' | median)
    else
      s[$who]=-; m[$who]=-
    fi
  done
  ratio=$(awk -v d="${s[dmce]}" -v a="${s[1.3.3]}" -v b="${s[0.9.0]}" 'BEGIN {
    f = ""; if (a != "-") f = a; if (b != "-" && (f == "" || b < f)) f = b;
    if (f == "" || f == 0) print "-"; else printf "%.2fx", d / f }')
  printf '| `%s` | %s | %s | %s | %s | %s | %s | %s |\n' "$cmd" "${s[dmce]}" "${s[1.3.3]}" \
    "${s[0.9.0]}" "$ratio" "${m[dmce]}" "${m[1.3.3]}" "${m[0.9.0]}"
done
echo
# Agreement, once: the peers' own differences are known (0.9.0's era_dump drops
# the current writeset and --logical keeps the lowest era; 1.3.3's era_dump
# writes runs as <marked> and its --logical is wrong on overlapping writesets),
# so what is compared is the answer all three must give alike.
for who in "${who_all[@]}"; do
  [ -n "${pre[$who]:-}" ] || continue
  # shellcheck disable=SC2086
  ${pre[$who]}era_invalidate --written-since "$mid" "$img" 2>/dev/null | sed 's/end = "/end="/' | awk 1 | md5sum | sed "s/-$/$who: era_invalidate --written-since $mid/"
done
