#!/usr/bin/env bash
# Figures for the GC / fsck half of issue 4, on one machine in one run:
#   `fsck --read-data` of a store of >= 4 GiB vs `b2sum` of the same segment bytes (both warm);
#   `gc --grace 0s` after unpinning 2/3 of the blobs (sweep + compaction of ~1/3-live segments).
# Usage: benches/compare_gc_fsck.sh [BLOBS=48] [BLOB_MIB=96] [WORK_DIR=/tmp/nm-gc-bench]
# Every blob is fresh random data, so nothing deduplicates; blobs are interleaved in segments
# (256 MiB each), so removing 2 of every 3 leaves segments about one third live.
set -euo pipefail
BLOBS=${1:-48}
BLOB_MIB=${2:-96}
WORK=${3:-/tmp/nm-gc-bench}
cd "$(dirname "$0")/.."
cargo build --release -q -p net-mesh-cli
NM=$PWD/target/release/net-mesh
STORE=$WORK/store
rm -rf "$WORK" && mkdir -p "$WORK"

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
ratio() { echo "scale=3; $1 / $2" | bc -l; }
seg_bytes() { du -cb "$STORE"/segments/seg-*.nms | tail -1 | cut -f1; }
b2_segments() { b2sum "$STORE"/segments/seg-*.nms; }

echo "putting $BLOBS blobs of $BLOB_MIB MiB"
ids=()
for i in $(seq 1 "$BLOBS"); do
  id=$(head -c "$((BLOB_MIB * 1024 * 1024))" /dev/urandom \
    | "$NM" --data-dir "$STORE" blob put --json - \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["blob_id"])')
  ids+=("$id")
done
sync
size=$(seg_bytes)
echo "store: $size bytes of segment files ($(ratio "$size" 1073741824) GiB)"

b2_segments >/dev/null                                   # warm the page cache
t_b2=$(secs b2_segments)
"$NM" --data-dir "$STORE" fsck --read-data >/dev/null     # warm (and check it is clean)
t_fsck=$(secs "$NM" --data-dir "$STORE" fsck --read-data)
t_fsck1=$(secs "$NM" --data-dir "$STORE" fsck --read-data --threads 1)
t_fsck_meta=$(secs "$NM" --data-dir "$STORE" fsck)
fsck_summary=$("$NM" --data-dir "$STORE" fsck --read-data | tail -3)

n=0
for i in "${!ids[@]}"; do
  if (( i % 3 != 0 )); then "$NM" --data-dir "$STORE" blob rm "${ids[$i]}"; n=$((n + 1)); fi
done
echo "unpinned $n of $BLOBS blobs"
s=$(date +%s.%N)
gc_json=$("$NM" --data-dir "$STORE" gc --grace 0s --json)
e=$(date +%s.%N)
t_gc=$(echo "$e - $s" | bc -l)
after=$(seg_bytes)
t_fsck_after=$(secs "$NM" --data-dir "$STORE" fsck --read-data)

printf '\n%-58s %10s\n' "measurement" "seconds"
printf '%-58s %10.2f\n' "b2sum of all segment files (warm)" "$t_b2"
printf '%-58s %10.2f\n' "net-mesh fsck --read-data (2 hashing threads, warm)" "$t_fsck"
printf '%-58s %10.2f\n' "net-mesh fsck --read-data --threads 1 (warm)" "$t_fsck1"
printf '%-58s %10.2f\n' "net-mesh fsck (no chunk reads)" "$t_fsck_meta"
printf '%-58s %10.2f\n' "net-mesh gc --grace 0s (2/3 unpinned)" "$t_gc"
printf '%-58s %10.2f\n' "net-mesh fsck --read-data after gc" "$t_fsck_after"
echo
echo "fsck --read-data / b2sum = $(ratio "$t_fsck" "$t_b2") (target <= 1.5)"
echo "fsck --read-data said: $fsck_summary"
echo "segment bytes before gc: $size, after: $after"
echo "gc report: $gc_json"
rm -rf "$WORK"
