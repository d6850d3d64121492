#!/bin/sh
# Writes the seed inputs made from the fixtures into fuzz/corpus/<target>/.
set -eu
cd "$(dirname "$0")/.."
nice cargo run --quiet --example fuzz_seeds -- fuzz/corpus
