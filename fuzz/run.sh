#!/bin/sh
# fuzz/run.sh TARGET SECONDS [libFuzzer options...]
# Fuzzes TARGET for SECONDS of wall time at the lowest priority, on one core,
# starting from the committed corpus and the seeds; new inputs go to
# fuzz/corpus/TARGET/, crashes to fuzz/artifacts/TARGET/.
set -eu
[ $# -ge 2 ] || { echo "usage: fuzz/run.sh TARGET SECONDS [libFuzzer options...]" >&2; exit 2; }
t=$1 secs=$2
shift 2
cd "$(dirname "$0")"
mkdir -p "corpus/$t" "artifacts/$t"
if [ -f "corpus/$t.tar.zst" ] && [ -z "$(ls -A "corpus/$t")" ]; then
    tar --zstd -xf "corpus/$t.tar.zst" -C "corpus/$t"
fi
[ -n "$(ls -A "corpus/$t")" ] || ./seed.sh
cd ..
RAYON_NUM_THREADS=1 exec nice -n 19 cargo +nightly fuzz run -s none -a "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" "$@"
