#!/usr/bin/env bash
# Side by side, in one run: this tree's `net-mesh` against a release build of another git
# revision, on the same random input: durable `blob put`, re-put of the input with one byte
# inserted in the middle (into the store holding the original), `blob get` (page cache
# warm), and, when both builds have `serve`, `blob get --node` from a node of the same build
# on 127.0.0.1 (`rget`). Runs alternate between the two builds (the order flips every round)
# so a noisy machine hits both alike; the medians and their ratio (this tree / REV) are
# reported.
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

# remote BIN NAME: a node of this build on a fresh store and a client of it; a remote put
# (not timed), then a timed remote get (after one to warm the page cache); appends to
# $WORK/NAME.rget
remote() {
  local bin=$1 name=$2 node=$WORK/node-$2 client=$WORK/client-$2 fifo=$WORK/$2.addr
  local id addr pid ref
  rm -rf "$node" "$client" "$fifo" && mkfifo "$fifo"
  "$bin" --data-dir "$client" identity generate default >/dev/null
  id=$("$bin" --data-dir "$client" identity show default --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')
  printf '%s write\n' "$id" > "$WORK/allow-$name"
  "$bin" --data-dir "$node" serve --listen 127.0.0.1:0 --allow "$WORK/allow-$name" \
    > "$fifo" 2> "$WORK/$name.log" &
  pid=$!
  read -r addr < "$fifo"
  ref=$("$bin" --data-dir "$client" --node "$addr" blob put "$IN" 2>/dev/null)
  "$bin" --data-dir "$client" --node "$addr" blob get "$ref" > /dev/null
  echo "$(secs "$bin" --data-dir "$client" --node "$addr" blob get "$ref")" >> "$WORK/$name.rget"
  "$bin" --data-dir "$client" --node "$addr" blob get "$ref" | cmp -s - "$IN" ||
    { echo "$name: remote get differs" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$node" "$client"
}
OPS="put reput get"
if "$OLD" serve --help >/dev/null 2>&1 && "$NEW" serve --help >/dev/null 2>&1; then
  OPS="$OPS rget"
fi
both() { one "$1" "$2"; case $OPS in *rget) remote "$1" "$2" ;; esac; }

rm -f "$WORK"/{old,new}.{put,reput,get,rget}
for i in $(seq 1 "$RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then both "$OLD" old; both "$NEW" new; else both "$NEW" new; both "$OLD" old; fi
  echo "round $i/$RUNS done"
done

printf '\n%-28s %10s %10s %8s\n' "${SIZE_MIB} MiB, ${RUNS} runs (median)" "this tree" "$REV" "ratio"
for op in $OPS; do
  n=$(median < "$WORK/new.$op"); o=$(median < "$WORK/old.$op")
  printf '%-28s %9.3fs %9.3fs %8.3f\n' "$op" "$n" "$o" "$(echo "$n / $o" | bc -l)"
done
rm -f "$IN" "$EDIT"
