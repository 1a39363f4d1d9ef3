#!/usr/bin/env bash
# Figures for the durable-staging issue, side by side on one machine (release build):
#  1. `blob put --resumable` (default 64 MiB checkpoint interval) vs plain durable `blob put`
#     of the same SIZE_MIB random file, RUNS times each, alternating, fresh store each run;
#     prints the medians, the best runs and the median of per-pair ratios (each pair runs
#     back to back, so it sees similar load on a shared machine) (goal <= 1.05).
#  2. Work lost by a kill: KILLS times, SIGKILL a resumable upload after a random delay,
#     read how far the killed writer had read its input (/proc/PID/fdinfo of the input fd),
#     then `staging list --json` for the resume offset; re-sent bytes = read - resume offset
#     (goal <= one checkpoint interval; the writer also holds up to one 4 MiB read buffer and
#     one max-size chunk that were read but not yet checkpointed).
# Usage: benches/staging_resumable.sh [SIZE_MIB=1024] [WORK_DIR=/tmp/nm-staging-bench] [RUNS=3] [KILLS=6]
set -euo pipefail
SIZE_MIB=${1:-1024}
WORK=${2:-/tmp/nm-staging-bench}
RUNS=${3:-3}
KILLS=${4:-6}
INTERVAL=$((64 * 1024 * 1024))
cd "$(dirname "$0")/.."
cargo build --release -q -p net-mesh-cli
NM=$PWD/target/release/net-mesh

rm -rf "$WORK" && mkdir -p "$WORK"
IN=$WORK/input.bin
echo "generating ${SIZE_MIB} MiB of random input"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$IN"
sync

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

plain=(); resumable=()
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/s"; sync
  plain+=("$(secs "$NM" --data-dir "$WORK/s" blob put "$IN")")
  rm -rf "$WORK/s"; sync
  resumable+=("$(secs "$NM" --data-dir "$WORK/s" blob put --resumable "$IN")")
done
rm -rf "$WORK/s"
mp=$(printf '%s\n' "${plain[@]}" | median)
mr=$(printf '%s\n' "${resumable[@]}" | median)
echo "plain durable blob put:  ${plain[*]} s  (median $mp s, $(echo "$SIZE_MIB / $mp" | bc -l | cut -c1-6) MiB/s)"
echo "blob put --resumable:    ${resumable[*]} s  (median $mr s, $(echo "$SIZE_MIB / $mr" | bc -l | cut -c1-6) MiB/s)"
minp=$(printf '%s\n' "${plain[@]}" | sort -n | head -1)
minr=$(printf '%s\n' "${resumable[@]}" | sort -n | head -1)
pairs=$(for i in "${!plain[@]}"; do echo "${resumable[$i]} / ${plain[$i]}" | bc -l; done | median)
echo "ratio resumable/plain:   median of per-pair ratios $(echo "scale=3; $pairs / 1" | bc -l), median $(echo "scale=3; $mr / $mp" | bc -l), best-of-$RUNS $(echo "scale=3; $minr / $minp" | bc -l)"

# --- work lost by a kill: independent trials, each a fresh store killed at a random moment ---
ST=$WORK/kills
full_ms=$(echo "$mr * 1000" | bc -l | cut -d. -f1)
max_resent=0
for k in $(seq "$KILLS"); do
  rm -rf "$ST"
  "$NM" --data-dir "$ST" blob put --resumable --staging-id bench "$IN" >/dev/null 2>&1 &
  pid=$!
  delay_ms=$(( (RANDOM * 32768 + RANDOM) % (full_ms * 9 / 10 + 1) ))
  sleep "$(echo "$delay_ms / 1000" | bc -l)"
  pos=""
  for fd in /proc/$pid/fd/*; do
    if [ "$(readlink "$fd" 2>/dev/null)" = "$IN" ]; then
      pos=$(awk '/^pos:/ {print $2}' "/proc/$pid/fdinfo/${fd##*/}" 2>/dev/null || true)
    fi
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$pos" ] || { echo "kill $k: writer not reading its input at the kill (finished or starting)"; continue; }
  off=$("$NM" --data-dir "$ST" staging list --json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["staging_id"]=="bench"]; print(r[0]["resume_offset"] if r else 0)')
  resent=$((pos - off))
  [ "$resent" -gt "$max_resent" ] && max_resent=$resent
  echo "kill $k after ${delay_ms} ms: writer had read $pos B, resume offset $off B, re-sent $resent B ($(echo "scale=3; $resent / $INTERVAL" | bc -l) intervals)"
  if [ "$k" = "$KILLS" ] && "$NM" --data-dir "$ST" staging list --json | grep -q bench; then
    "$NM" --data-dir "$ST" staging resume bench "$IN" --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print("resume to the end: resumed_from", j["resumed_from"], "replayed", j["replayed_bytes"], "new_bytes", j["new_bytes"])'
    plain_ref=$(rm -rf "$WORK/p" && "$NM" --data-dir "$WORK/p" blob put "$IN")
    [ "$("$NM" --data-dir "$ST" blob ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["blob_ref"])')" = "$plain_ref" ] && echo "resumed ref == plain ref"
  fi
done
echo "max re-sent bytes: $max_resent (checkpoint interval $INTERVAL)"
