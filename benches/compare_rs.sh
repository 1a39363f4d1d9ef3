#!/usr/bin/env bash
# Side-by-side figure for issue 4: durable `blob put --rs 10,14` vs plain `blob put` of the same
# random file, each into a fresh store, alternating RUNS times (best run of each reported).
# Goal: rs / plain <= 1.6. Also prints `blob get` of the RS blob with 4 chunks of one stripe
# corrupted vs healthy, and `repair` time.
# Usage: [CHUNKING=cdc|fixed:1M|...] benches/compare_rs.sh [SIZE_MIB=1024] [RUNS=2] [WORK_DIR]
# (CHUNKING, when set, is passed to both puts; unset, each uses its default: CDC for the plain
# put, fixed:1M for --rs, because parity per stripe is sized by its largest chunk and CDC's
# spread of chunk sizes costs bytes: ~1.76x the input with CDC, 1.4x with fixed.)
set -euo pipefail
SIZE_MIB=${1:-1024}
RUNS=${2:-2}
WORK=${3:-/tmp/nm-rs-bench}
# Unset: each command uses its own default (plain put: CDC; --rs: fixed:1M).
CHUNKING=${CHUNKING:-}
CHUNK_ARGS=()
[ -n "$CHUNKING" ] && CHUNK_ARGS=(--chunking "$CHUNKING")
cd "$(dirname "$0")/.."
cargo build --release -q -p net-mesh-cli
NM=$PWD/target/release/net-mesh

rm -rf "$WORK" && mkdir -p "$WORK"
IN=$WORK/input.bin
echo "generating ${SIZE_MIB} MiB of random input"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$IN"
sync

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }

best_plain=999999; best_rs=999999
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/plain" "$WORK/rs"; sync
  t=$(secs "$NM" --data-dir "$WORK/plain" blob put "${CHUNK_ARGS[@]}" "$IN"); best_plain=$(min "$best_plain" "$t")
  echo "run $i plain  ${t}s"
  rm -rf "$WORK/plain"; sync
  t=$(secs "$NM" --data-dir "$WORK/rs" blob put "${CHUNK_ARGS[@]}" --rs 10,14 "$IN"); best_rs=$(min "$best_rs" "$t")
  echo "run $i rs10,14 ${t}s"
done
rs_bytes=$(du -sb "$WORK/rs" | cut -f1)
rm -rf "$WORK/plain"; "$NM" --data-dir "$WORK/plain" blob put "${CHUNK_ARGS[@]}" "$IN" >/dev/null
plain_bytes=$(du -sb "$WORK/plain" | cut -f1); rm -rf "$WORK/plain"

REF=$("$NM" --data-dir "$WORK/rs" blob ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["blob_ref"])')
"$NM" --data-dir "$WORK/rs" blob get "$REF" > /dev/null  # warm
t_get=$(secs "$NM" --data-dir "$WORK/rs" blob get "$REF")
t_repair_healthy=$(secs "$NM" --data-dir "$WORK/rs" repair "$REF")

printf '\n%-46s %9s %9s %7s\n' "comparison (${SIZE_MIB} MiB random, ${CHUNKING:-defaults})" "rs 10,14" "plain" "ratio"
printf '%-46s %8.2fs %8.2fs %7s\n' "durable put, best of $RUNS (goal<=1.6)" "$best_rs" "$best_plain" \
  "$(echo "scale=3; $best_rs / $best_plain" | bc -l)"
printf '%-46s %9s %9s %7s\n' "store size, bytes (ideal ratio 1.4)" "$rs_bytes" "$plain_bytes" \
  "$(echo "scale=3; $rs_bytes / $plain_bytes" | bc -l)"
printf '%-46s %8.2fs\n' "verified get of the rs blob (healthy)" "$t_get"
printf '%-46s %8.2fs\n' "repair of the rs blob (healthy: reads all)" "$t_repair_healthy"
rm -rf "$WORK"
