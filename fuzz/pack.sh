#!/bin/sh
# fuzz/pack.sh TARGET: minimises fuzz/corpus/TARGET/ (libFuzzer's -merge keeps
# the smallest inputs that reach every feature) and packs it as
# fuzz/corpus/TARGET.tar.zst, the corpus that is committed and replayed by
# `cargo test`. FUZZ_TIMEOUT (seconds, default 10) is the merge's -timeout: raise it
# for a target whose slowest inputs take longer in this build.
set -eu
[ $# -eq 1 ] || { echo "usage: fuzz/pack.sh TARGET" >&2; exit 2; }
t=$1
cd "$(dirname "$0")"
min=$(mktemp -d)
trap 'rm -rf "$min"' EXIT
cd ..
RAYON_NUM_THREADS=1 nice -n 19 cargo +nightly fuzz run -s none -a "$t" "$min" "fuzz/corpus/$t" -- \
    -merge=1 -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -artifact_prefix="fuzz/artifacts/$t/"
tar --zstd -cf "fuzz/corpus/$t.tar.zst" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime=@0 -C "$min" .
echo "fuzz/corpus/$t.tar.zst: $(ls "$min" | wc -l) inputs, $(du -k "fuzz/corpus/$t.tar.zst" | cut -f1) KiB"
