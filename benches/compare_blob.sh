#!/usr/bin/env bash
# Side-by-side figures for the storage engine issue, in one run on one machine:
#   durable `blob put` of a random file vs `dd conv=fdatasync` and `borg create`;
#   re-put with one byte inserted in the middle vs borg; `blob get` vs `b2sum`;
#   peak RSS of `blob put` for SIZE and 8×SIZE inputs.
# Usage: benches/compare_blob.sh [SIZE_MIB=1024] [WORK_DIR=/tmp/nm-bench]
# Installs its peers (borgbackup, GNU time) with apt-get when they are missing.
set -euo pipefail
SIZE_MIB=${1:-1024}
WORK=${2:-/tmp/nm-bench}
BIG_MIB=$((SIZE_MIB * 8))
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need borg || [ ! -x /usr/bin/time ]; then
  apt-get update -qq && apt-get install -y -qq borgbackup time >/dev/null
fi
cargo build --release -q -p net-mesh-cli
NM=$PWD/target/release/net-mesh

rm -rf "$WORK" && mkdir -p "$WORK"
IN=$WORK/input.bin
echo "generating ${SIZE_MIB} MiB of random input"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$IN"
HALF=$((SIZE_MIB * 1024 * 1024 / 2))
EDIT=$WORK/edited.bin
{ head -c "$HALF" "$IN"; printf 'X'; tail -c +"$((HALF + 1))" "$IN"; } > "$EDIT"
sync

# secs CMD... : wall seconds of one run
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
ratio() { echo "scale=3; $1 / $2" | bc -l; }

export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_CACHE_DIR=$WORK/borg-cache BORG_CONFIG_DIR=$WORK/borg-config BORG_BASE_DIR=$WORK/borg-base
borg init -e none "$WORK/borg"

t_dd=$(secs dd if="$IN" of="$WORK/dd.out" bs=4M conv=fdatasync status=none)
rm -f "$WORK/dd.out"
t_put=$(secs "$NM" --data-dir "$WORK/store" blob put "$IN")
t_borg=$(secs borg create --compression none "$WORK/borg::a" "$IN")

reput_json=$("$NM" --data-dir "$WORK/store" blob put --json "$EDIT" 2>/dev/null || true)
# time the re-put on a copy of the store state before it, for a fair measurement
rm -rf "$WORK/store2" && "$NM" --data-dir "$WORK/store2" blob put "$IN" >/dev/null
t_reput=$(secs "$NM" --data-dir "$WORK/store2" blob put "$EDIT")
t_borg_reput=$(secs borg create --compression none "$WORK/borg::b" "$EDIT")
new_bytes=$(echo "$reput_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["new_bytes"])')

REF=$("$NM" --data-dir "$WORK/store" blob put "$IN")
"$NM" --data-dir "$WORK/store" blob get "$REF" > /dev/null   # warm
t_get=$(secs "$NM" --data-dir "$WORK/store" blob get "$REF")
t_b2=$(secs b2sum "$IN")

rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}'; }
rm -rf "$WORK/rss1" "$WORK/rss8"
rss_1=$(rss "$NM" --data-dir "$WORK/rss1" blob put "$IN")
rss_8=$(head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom | rss "$NM" --data-dir "$WORK/rss8" blob put -)

printf '\n%-44s %10s %10s %8s\n' "comparison (${SIZE_MIB} MiB random file)" "net-mesh" "peer" "ratio"
printf '%-44s %9.2fs %9.2fs %8s\n' "durable put vs dd conv=fdatasync (goal<=1.15)" "$t_put" "$t_dd" "$(ratio "$t_put" "$t_dd")"
printf '%-44s %9.2fs %9.2fs %8s\n' "durable put vs borg create (goal<=0.75)" "$t_put" "$t_borg" "$(ratio "$t_put" "$t_borg")"
printf '%-44s %9.2fs %9.2fs %8s\n' "re-put +1 byte vs borg re-create (goal<=0.3)" "$t_reput" "$t_borg_reput" "$(ratio "$t_reput" "$t_borg_reput")"
printf '%-44s %10s\n' "re-put new bytes stored (goal<=8 MiB)" "$new_bytes"
printf '%-44s %9.2fs %9.2fs %8s\n' "verified get vs b2sum (goal<=0.5)" "$t_get" "$t_b2" "$(ratio "$t_get" "$t_b2")"
printf '%-44s %8sKiB %8sKiB %8s\n' "peak RSS put ${SIZE_MIB} MiB / ${BIG_MIB} MiB (<=64MiB)" "$rss_1" "$rss_8" "diff $(( (rss_8 - rss_1) ))KiB"
rm -rf "$WORK"
