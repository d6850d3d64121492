#!/usr/bin/env bash
# Runs the era integration tests of thin-provisioning-tools 1.3.3 (its
# tests/era_check.rs, era_dump.rs, era_invalidate.rs and era_restore.rs) against
# dmce, and prints how many passed, failed and were excluded. Not a test of the
# ordinary suite: it needs that project's source tree, which is never part of this
# repository, e.g.
#   TPT_SRC=/path/to/thin-provisioning-tools-1.3.3 benches/peer_suite.sh
#
# The peer's tests run the binary their build names (`pdata_tools era_check ...`,
# a path compiled into them). The suite is built with cargo --offline (nothing is
# downloaded: the crates must be in cargo's cache, `cargo fetch` in TPT_SRC puts
# them there; building it needs libdevmapper-dev and libclang-dev) into
# $PEER_TARGET (default $TPT_SRC/target-dmce); then that pdata_tools is moved aside
# and a wrapper takes its place, generated here, which runs dmce for the era tools
# and the real pdata_tools for everything else (the tests unpack their fixtures
# with thin_metadata_unpack). The tests run in a temporary directory (they make
# their files in the current one). DMCE names the binary under test (default: the
# release build of this repository, built if needed).
#
# Excluded: the tests that compare the exact --help text (ours documents other
# options, in other words) and the version string (ours is dmce's version).
# Exit status 0 when no test failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=${TPT_SRC:?set TPT_SRC to a thin-provisioning-tools 1.3.3 source tree}
src=$(cd "$src" && pwd)
for t in era_check era_dump era_invalidate era_restore; do
  [ -f "$src/tests/$t.rs" ] || { echo "$src: no tests/$t.rs" >&2; exit 1; }
done
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$src/Cargo.toml" | head -1)
[ "$version" = 1.3.3 ] || echo "warning: $src is version $version, not 1.3.3" >&2

if [ -z "${DMCE:-}" ]; then
  (cd "$repo" && cargo build --release -q)
  DMCE=$(cd "$repo" && realpath "${CARGO_TARGET_DIR:-target}")/release/dmce
fi
DMCE=$(realpath "$DMCE")
[ -x "$DMCE" ] || { echo "$DMCE: not an executable" >&2; exit 1; }

target=${PEER_TARGET:-$src/target-dmce}
mkdir -p "$target"
target=$(realpath "$target")
echo "building the peer's era tests in $target" >&2
json=$(cd "$src" && CARGO_TARGET_DIR=$target nice cargo test --offline --release --no-run \
  --test era_check --test era_dump --test era_invalidate --test era_restore \
  --message-format=json)
mapfile -t tests < <(printf '%s\n' "$json" |
  jq -r 'select(.reason == "compiler-artifact" and .executable != null
                and .target.kind == ["test"]) | .executable')
[ "${#tests[@]}" -eq 4 ] || { echo "expected 4 test binaries, got ${#tests[@]}" >&2; exit 1; }

# The wrapper in place of the pdata_tools the tests were built to run; the real
# one moves to a directory of its own, keeping its name (it picks its tool by it).
bin=$target/release/pdata_tools
real=$target/release/dmce-peer-suite/pdata_tools
marker='# dmce peer-suite wrapper'
# Cargo links its binaries into place afresh on every build (a hard link of the
# one in deps/), so the real one is whatever is there unless it is the wrapper.
if ! grep -qx "$marker" "$bin" 2>/dev/null; then
  mkdir -p "$(dirname "$real")"
  rm -f "$real"
  ln "$bin" "$real" 2>/dev/null || cp "$bin" "$real"
fi
cat > "$bin.new" <<EOF
#!/bin/sh
$marker
case "\$1" in
  era_check|era_dump|era_invalidate|era_restore|era_repair) exec '$DMCE' "\$@" ;;
esac
exec '$real' "\$@"
EOF
chmod +x "$bin.new"
mv -f "$bin.new" "$bin"

excluded=(accepts_h accepts_help accepts_v accepts_version)
skip=()
for e in "${excluded[@]}"; do skip+=(--skip "$e"); done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0 nexcluded=0
failures=()
for t in "${tests[@]}"; do
  name=$(basename "$t" | sed 's/-[0-9a-f]*$//')
  log=$work/$name.log
  (cd "$work" && "$t" --exact "${skip[@]}" --test-threads=2 >"$log" 2>&1) || true
  p=$(grep -c '^test .* \.\.\. ok$' "$log" || true)
  f=$(grep -c '^test .* \.\.\. FAILED$' "$log" || true)
  n=$("$t" --list 2>/dev/null | grep -c ': test$' || true)
  passed=$((passed + p))
  failed=$((failed + f))
  nexcluded=$((nexcluded + n - p - f))
  while read -r line; do failures+=("$name::$line"); done < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log")
  if [ "$f" -gt 0 ] || [ "$((p + f))" -eq 0 ]; then
    sed -n '/^failures:$/,/^test result/p' "$log" >&2
  fi
  echo "$name: $p passed, $f failed, $((n - p - f)) excluded" >&2
done
echo "peer suite (thin-provisioning-tools $version, era tests) against $DMCE:"
echo "passed $passed, failed $failed, excluded $nexcluded (exact --help text: accepts_h, accepts_help; version string: accepts_v, accepts_version)"
for f in "${failures[@]}"; do echo "FAILED $f"; done
[ "$failed" -eq 0 ]
