#!/usr/bin/env bash
# Side by side, in one run: this tree's `net-mesh` against a release build of another git
# revision, on the same random input: durable `blob put`, re-put of the input with one byte
# inserted in the middle (into the store holding the original), and `blob get` (page cache
# warm). Runs alternate between the two builds (the order flips every round) so a noisy
# machine hits both alike; the medians and their ratio (this tree / REV) are reported.
# Usage: benches/compare_builds.sh REV [SIZE_MIB=1024] [RUNS=5] [WORK_DIR=/tmp/nm-builds]
set -euo pipefail
REV=${1:?usage: benches/compare_builds.sh REV [SIZE_MIB] [RUNS] [WORK_DIR]}
SIZE_MIB=${2:-1024}
RUNS=${3:-5}
WORK=${4:-/tmp/nm-builds}
cd "$(dirname "$0")/.."

mkdir -p "$WORK"
OLD_SRC=$WORK/src-$REV
if [ ! -d "$OLD_SRC" ]; then
  git worktree add -q --detach "$OLD_SRC" "$REV"
fi
echo "building $REV and this tree (release)"
CARGO_TARGET_DIR=$WORK/target-old cargo build --release -q --manifest-path "$OLD_SRC/Cargo.toml" -p net-mesh-cli
cargo build --release -q -p net-mesh-cli
OLD=$WORK/target-old/release/net-mesh
NEW=$PWD/target/release/net-mesh

IN=$WORK/input.bin
EDIT=$WORK/edited.bin
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$IN"
HALF=$((SIZE_MIB * 1024 * 1024 / 2))
{ head -c "$HALF" "$IN"; printf 'X'; tail -c +"$((HALF + 1))" "$IN"; } > "$EDIT"
sync

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# one BIN NAME: a fresh store; put, re-put, get; appends the times to $WORK/NAME.{put,reput,get}
one() {
  local bin=$1 name=$2 store=$WORK/store-$2 ref
  rm -rf "$store"
  echo "$(secs "$bin" --data-dir "$store" blob put "$IN")" >> "$WORK/$name.put"
  echo "$(secs "$bin" --data-dir "$store" blob put "$EDIT")" >> "$WORK/$name.reput"
  ref=$("$bin" --data-dir "$store" blob put "$IN")
  "$bin" --data-dir "$store" blob get "$ref" > /dev/null
  echo "$(secs "$bin" --data-dir "$store" blob get "$ref")" >> "$WORK/$name.get"
  # Both builds did all the work: the blob reads back equal to the input.
  "$bin" --data-dir "$store" blob get "$ref" | cmp -s - "$IN" || { echo "$name: get differs" >&2; exit 1; }
  rm -rf "$store"
}

rm -f "$WORK"/{old,new}.{put,reput,get}
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then one "$OLD" old; one "$NEW" new; else one "$NEW" new; one "$OLD" old; fi
  echo "round $i/$RUNS done"
done

printf '\n%-28s %10s %10s %8s\n' "${SIZE_MIB} MiB, ${RUNS} runs (median)" "this tree" "$REV" "ratio"
for op in put reput get; do
  n=$(median < "$WORK/new.$op"); o=$(median < "$WORK/old.$op")
  printf '%-28s %9.3fs %9.3fs %8.3f\n' "$op" "$n" "$o" "$(echo "$n / $o" | bc -l)"
done
rm -f "$IN" "$EDIT"
